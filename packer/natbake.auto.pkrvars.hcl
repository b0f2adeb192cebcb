# Example variable values for a rendered nat-ami.pkr.hcl (see README.md
# next to this file). Every variable has a default taken from the site
# spec's `ami` settings; set here only what a pipeline must change, and
# delete the rest. Names that the template does not declare are ignored by
# Packer with only a warning, so keep to the eight below.

# Region the build instance runs in and the AMI is created in. Stay in the
# partition the spec was rendered for (standard, China or GovCloud): the
# source image's owner account was chosen for it.
region = "us-east-1"

# Build instance type. It must match the spec's `arch`: x86_64 types such
# as t3.micro, arm64 (Graviton) types such as t4g.micro. It only runs the
# provisioning; the AMI can be launched on any type of that architecture.
instance_type = "t3.micro"

# The AMI is named "<prefix>-<UTC timestamp>", e.g.
# natbake-corp-prod-20250101120000. Keep to what the spec's
# ami.name_prefix accepts: 1 to 100 letters, digits, ".", "_" or "-".
ami_name_prefix = "natbake-corp-prod"

# Subnet of the build instance. Empty uses the default VPC. The subnet
# must give the instance a public IP address (Packer connects over SSH
# through a temporary security group) and reach the package mirrors.
subnet_id = "subnet-0a1b2c3d4e5f67890"

# More regions to copy the finished AMI to (same partition); each copy is
# tagged like the original and has its own AMI id in packer-manifest.json.
copy_to = ["eu-west-1", "us-west-2"]

# 12-digit AWS account ids allowed to launch the AMI (and its copies).
# This grants launch permission only; the snapshots stay private.
share_with = ["123456789012", "210987654321"]

# Days after the build at which EC2 marks the AMI (and each copy)
# deprecated: 7 to 3650. A deprecated AMI still launches from a launch
# template that names its id; the monthly rebuild replaces it long before.
deprecate_after_days = 90

# The SSM parameter that gets the new AMI id in each region the AMI is made
# in (region and copy_to), where the stack takes its image from. Empty
# publishes nothing; names under /aws or /ssm are AWS's own.
image_parameter = "/natbake/corp-prod/ami-id"
