#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    platform_runtime::host::run("orders", orders::PORT, orders::start).await;
}
