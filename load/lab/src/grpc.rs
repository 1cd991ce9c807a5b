//! Orders' calls as raw gRPC: the length-prefixed protobuf bodies (for
//! h2load's data files and for our own client) and one unary call over a
//! kept-alive HTTP/2 connection that reads `grpc-status` from the trailers,
//! which h2load cannot.

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request};
use platform_proto::orders::v1::{CreateOrderRequest, GetOrderRequest, OrderItem};
use prost::Message;
use tokio::net::TcpStream;

pub const GET_ORDER: &str = "/platform.orders.v1.OrderService/GetOrder";
pub const CREATE_ORDER: &str = "/platform.orders.v1.OrderService/CreateOrder";

/// A gRPC message on the wire: uncompressed flag, big-endian length, bytes.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

pub fn get_order(order_id: &str) -> Vec<u8> {
    frame(&GetOrderRequest {
        order_id: order_id.to_owned(),
    })
}

/// The order the REST calls create too; an empty `request_id` is none.
pub fn create_order(request_id: &str) -> Vec<u8> {
    frame(&CreateOrderRequest {
        items: vec![OrderItem {
            sku: "sticker-1".into(),
            quantity: 1,
            unit_price_minor: 100,
        }],
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        request_id: request_id.to_owned(),
        ..Default::default()
    })
}

/// One HTTP/2 connection to a gRPC server on loopback.
pub struct Connection {
    sender: SendRequest<Bytes>,
    port: u16,
}

impl Connection {
    pub async fn open(port: u16) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = h2::client::handshake(tcp).await?;
        // The connection task ends when the server or the last sender closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, port })
    }

    /// A unary call; the gRPC status code (0 is OK) from the trailers, or
    /// from the headers of a trailers-only answer.
    pub async fn call(&mut self, path: &str, bearer: &str, body: Vec<u8>) -> anyhow::Result<u32> {
        let request = Request::post(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {bearer}"))
            .body(())?;
        let mut ready = self.sender.clone().ready().await?;
        let (response, mut stream) = ready.send_request(request, false)?;
        stream.send_data(Bytes::from(body), true)?;
        let response = response.await?;
        if response.status() != http::StatusCode::OK {
            anyhow::bail!("HTTP {}", response.status());
        }
        let headers = response.headers().clone();
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await?;
        status(trailers.as_ref().unwrap_or(&headers))
    }
}

fn status(headers: &HeaderMap) -> anyhow::Result<u32> {
    let value = headers
        .get("grpc-status")
        .ok_or_else(|| anyhow::anyhow!("no grpc-status"))?;
    Ok(value.to_str()?.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_get_order() {
        // Field 1, wire type 2, length 3, "abc" behind the 5-byte prefix.
        assert_eq!(
            get_order("abc"),
            vec![0, 0, 0, 0, 5, 0x0a, 3, b'a', b'b', b'c']
        );
    }

    #[test]
    fn a_create_order_decodes_back() {
        let framed = create_order("r-1");
        let length = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]);
        assert_eq!(length as usize, framed.len() - 5);
        let decoded = CreateOrderRequest::decode(&framed[5..]).expect("decode");
        assert_eq!(decoded.request_id, "r-1");
        assert_eq!(decoded.items[0].unit_price_minor, 100);
    }

    #[test]
    fn reads_the_status() {
        let mut headers = HeaderMap::new();
        assert!(status(&headers).is_err());
        headers.insert("grpc-status", "16".parse().expect("value"));
        assert_eq!(status(&headers).expect("status"), 16);
    }
}
