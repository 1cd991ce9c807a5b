//! The fixed local ports: blue auth/orders/payments/notifications on
//! 50051-50054, green on 50151-50154, metrics on each port + 1000; a second
//! (third...) replica of each on the same ports + 200 (+ 400...).

use platform_runtime::Color;

pub const SERVICES: [&str; 4] = ["auth", "orders", "payments", "notifications"];

/// How far `--port-offset` may shift the layout: every port stays within 1024..=65535.
pub const OFFSETS: std::ops::RangeInclusive<i64> = -7_000..=14_000;

/// The gateway's public REST/gRPC port, its admin port and its internal
/// (east-west) gRPC port.
pub fn gateway(offset: i32) -> (u16, u16, u16) {
    let port = |base: i32| u16::try_from(base + offset).unwrap_or(0);
    (port(8080), port(9901), port(8081))
}

/// The gRPC port of `service` in `color`, shifted by `offset` (within [`OFFSETS`]).
pub fn grpc(service: &str, color: Color, offset: i32) -> u16 {
    let index = SERVICES.iter().position(|s| *s == service).unwrap_or(0) as i32;
    let base = match color {
        Color::Blue => 50051,
        Color::Green => 50151,
    };
    u16::try_from(base + index + offset).unwrap_or(0)
}

pub fn metrics(service: &str, color: Color, offset: i32) -> u16 {
    grpc(service, color, offset + 1000)
}

/// How far each further replica is shifted.
pub const REPLICA_STRIDE: i32 = 200;

/// The offset of replica `replica` (0 is the first) of a layout at `offset`.
pub fn replica_offset(offset: i32, replica: usize) -> i32 {
    offset + REPLICA_STRIDE * i32::try_from(replica).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_documented_layout() {
        assert_eq!(grpc("auth", Color::Blue, 0), 50051);
        assert_eq!(grpc("notifications", Color::Blue, 0), 50054);
        assert_eq!(grpc("orders", Color::Green, 0), 50152);
        assert_eq!(metrics("auth", Color::Blue, 0), 51051);
        assert_eq!(metrics("payments", Color::Green, 0), 51153);
        assert_eq!(gateway(0), (8080, 9901, 8081));
        assert_eq!(grpc("orders", Color::Blue, replica_offset(0, 1)), 50252);
        assert_eq!(metrics("orders", Color::Green, replica_offset(0, 2)), 51552);
        for offset in [*OFFSETS.start(), *OFFSETS.end()] {
            let offset = offset as i32;
            assert!(gateway(offset).0 >= 1024);
            assert!(metrics("notifications", Color::Green, offset) > 1024);
        }
    }
}
