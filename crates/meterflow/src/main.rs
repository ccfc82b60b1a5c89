//! `meterflow`: see `meterflow --help`.

fn main() -> std::process::ExitCode {
    meterflow::cli::main()
}
