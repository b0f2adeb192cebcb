use std::process::ExitCode;

fn main() -> ExitCode {
    natbake::main_with_args(std::env::args_os())
}
