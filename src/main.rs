//! The `personal-ai-agent` binary: everything lives in the library; see `cli::main`.

fn main() -> std::process::ExitCode {
    personal_ai_agent::cli::main()
}
