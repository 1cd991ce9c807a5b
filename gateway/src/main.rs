#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    std::process::exit(gateway::main_from_env().await);
}
