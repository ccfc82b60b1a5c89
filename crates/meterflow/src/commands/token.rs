//! `meterflow token`: a new API token for a role, printed once with the
//! hashed line for `[api] tokens_file`.

use std::process::ExitCode;

/// Make and print a token for `role`.
pub(crate) fn run(role: &str) -> ExitCode {
    match meterflow_http::new_token(role) {
        Ok((token, line)) => {
            println!("token (give it to its holder; it is not stored): {token}");
            println!("tokens_file line: {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}
