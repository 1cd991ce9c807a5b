#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    platform_runtime::host::run("payments", payments::PORT, payments::start).await;
}
