#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    platform_runtime::host::run("notifications", notifications::PORT, notifications::start).await;
}
