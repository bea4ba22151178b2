//! The example agent backend the tests, benchmarks and release bundles run in place of the real agent.
//! Its code is `personal_ai_agent::demo::agent` (the launcher's hidden `demo-agent` subcommand runs the
//! same), documented there: `/health`, a chat echo, and a page with the update status and "Update now".

fn main() {
    personal_ai_agent::demo::agent::main(std::env::args().skip(1))
}
