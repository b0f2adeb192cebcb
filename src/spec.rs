//! The site spec (version 1) exactly as written in YAML.
//!
//! These types only describe shape: unknown keys are refused here
//! (`deny_unknown_fields`), and every value that validation looks at keeps
//! its location ([`Spanned`]) so that a problem can name its line and column.
//! Meaning is checked in [`crate::validate`], which turns a [`RawSpec`] into a
//! [`crate::site::Site`] with the value parsers of [`crate::values`]. A new
//! section of the spec is one type here and one method there.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A value with the line and column where it was written.
pub type At<T> = Spanned<T>;

/// The top level of a site spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub version: At<ScalarText>,
    pub site: At<String>,
    pub description: Option<At<String>>,
    pub os: Option<At<String>>,
    pub arch: Option<At<String>>,
    pub vpc_cidrs: At<Vec<At<String>>>,
    pub egress: Option<At<bool>>,
    /// `forwards:` with nothing after it means no forwards, as an empty list does.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub forwards: Vec<At<RawForward>>,
    pub sysctl: Option<At<SpannedMap<At<ScalarText>>>>,
    pub ami: Option<At<RawAmi>>,
    pub failover: Option<At<RawFailover>>,
    pub health: Option<At<RawHealth>>,
    pub metrics: Option<At<RawMetrics>>,
    pub deployment: Option<At<String>>,
}

/// One port forward.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub name: At<String>,
    pub proto: Option<At<String>>,
    pub port: At<ScalarText>,
    pub to: At<String>,
    pub from: At<Vec<At<String>>>,
    pub public: Option<At<bool>>,
    pub log: Option<At<bool>>,
    pub description: Option<At<String>>,
}

/// Settings of the Packer build.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmi {
    pub region: Option<At<String>>,
    pub instance_type: Option<At<String>>,
    pub name_prefix: Option<At<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub copy_to: Vec<At<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub share_with: Vec<At<ScalarText>>,
    pub subnet_id: Option<At<String>>,
    pub tags: Option<At<SpannedMap<At<ScalarText>>>>,
    pub deprecate_after_days: Option<At<ScalarText>>,
}

/// A replaceable instance that takes over a floating network interface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    pub floating_eni: Option<At<bool>>,
    pub attach_timeout: Option<At<ScalarText>>,
    pub standby: Option<At<bool>>,
    pub advert_interval_ms: Option<At<ScalarText>>,
}

/// Settings of the health check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub enabled: Option<At<bool>>,
    pub interval: Option<At<ScalarText>>,
}

/// Metrics the health check publishes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub cloudwatch: Option<At<bool>>,
    pub per_forward: Option<At<bool>>,
}

/// A list that may also be written as nothing at all (YAML null).
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A scalar kept as text, whether YAML typed it as a string or a number.
///
/// Ports (`51532` or `"60000-60010"`), sysctl values, account ids and tag
/// values may be written either way; validation reads the text. Booleans,
/// floats and collections are refused here, because their text is not
/// what the user typed (`1.10` would become `1.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ScalarText, E> {
                Err(E::custom(
                    "a decimal number here loses its spelling; quote it as a string",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping whose keys keep their locations, in the order written.
///
/// Duplicate keys never get this far: the parser refuses them.
#[derive(Debug)]
pub struct SpannedMap<V>(pub Vec<(At<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapV<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapV<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<At<String>>()? {
                    let value = map.next_value::<V>()?;
                    entries.push((key, value));
                }
                Ok(SpannedMap(entries))
            }
        }
        d.deserialize_map(MapV(std::marker::PhantomData))
    }
}
