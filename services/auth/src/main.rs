#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    platform_runtime::host::run("auth", auth::PORT, auth::start).await;
}
