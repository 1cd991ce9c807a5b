//! The platform's gRPC contracts: generated messages, clients and servers, and
//! the encoded descriptor sets that reflection and the gateway read.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// What a request field must hold (`(fieldrules.v1.rules)`), read from the
/// descriptors by the gateway's OpenAPI document.
pub mod fieldrules {
    pub mod v1 {
        tonic::include_proto!("fieldrules.v1");
    }
}

pub mod annotations;
pub mod rules;

// `impl rules::Validate` for every message with rules, from build.rs.
include!(concat!(env!("OUT_DIR"), "/validate.rs"));

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("platform.auth.v1");
        /// Descriptors of this service and its imports, for reflection.
        pub const DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/auth_descriptor.bin"));
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("platform.orders.v1");
        /// Descriptors of this service and its imports, for reflection.
        pub const DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/orders_descriptor.bin"));
    }
}

pub mod payments {
    pub mod v1 {
        tonic::include_proto!("platform.payments.v1");
        /// Descriptors of this service and its imports, for reflection.
        pub const DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/payments_descriptor.bin"));
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("platform.notifications.v1");
        /// Descriptors of this service and its imports, for reflection.
        pub const DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/notifications_descriptor.bin"));
    }
}

/// Every contract in one descriptor set, with `google.api.http` options kept.
pub const PLATFORM_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/platform_descriptor.bin"));
