//! The gRPC services the gateway answers itself: server reflection (so
//! `grpcurl` works against the gateway with no proto files) and health
//! (NOT_SERVING while it drains). Reflection on the public listener shows
//! only what is reachable there: internal methods (Charge, Send, ...) and
//! services left with none are taken out of the contracts it serves.

use std::convert::Infallible;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::Service;

use crate::boxed::BoxBody;

#[derive(Clone)]
pub struct LocalGrpc {
    public: Routes,
    internal: Routes,
    health: HealthReporter,
}

impl std::fmt::Debug for LocalGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalGrpc")
    }
}

impl LocalGrpc {
    /// Serves `descriptor_sets` in full on the internal listener, and on
    /// the public one only the methods in `public` (`/package.Service/Method`).
    pub fn new(
        descriptor_sets: &[&[u8]],
        public: &std::collections::HashSet<String>,
    ) -> Result<Self, String> {
        let filtered = descriptor_sets
            .iter()
            .map(|set| only_public(set, public))
            .collect::<Result<Vec<_>, _>>()?;
        let filtered: Vec<&[u8]> = filtered.iter().map(Vec::as_slice).collect();
        let (health, health_service) = tonic_health::server::health_reporter();
        Ok(Self {
            public: reflection(&filtered)?.add_service(health_service.clone()),
            internal: reflection(descriptor_sets)?.add_service(health_service),
            health,
        })
    }

    /// The methods answered here.
    pub const METHODS: [&str; 4] = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];

    /// True for the paths answered here.
    pub fn handles(path: &str) -> bool {
        path.starts_with("/grpc.reflection.") || path.starts_with("/grpc.health.v1.Health/")
    }

    pub async fn call(
        &self,
        request: Request<Incoming>,
        listener: crate::proxy::conn::Listener,
    ) -> Response<BoxBody> {
        let request = request.map(tonic::body::Body::new);
        let mut routes = match listener {
            crate::proxy::conn::Listener::Public => self.public.clone(),
            crate::proxy::conn::Listener::Internal => self.internal.clone(),
        };
        let response: Result<Response<tonic::body::Body>, Infallible> = routes.call(request).await;
        match response {
            Ok(response) => response.map(|body| {
                body.map_err(|status| Box::new(status) as crate::boxed::BoxError)
                    .boxed_unsync()
            }),
            Err(never) => match never {},
        }
    }

    pub async fn draining(&self) {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
    }
}

/// Reflection (v1 and v1alpha) over `descriptor_sets` and health, which the
/// gateway answers itself.
fn reflection(descriptor_sets: &[&[u8]]) -> Result<Routes, String> {
    let health = tonic_health::pb::FILE_DESCRIPTOR_SET;
    let mut v1 =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(health);
    let mut v1alpha =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(health);
    for set in descriptor_sets {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    let v1 = v1.build_v1().map_err(|e| format!("reflection: {e}"))?;
    let v1alpha = v1alpha
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    Ok(Routes::new(v1).add_service(v1alpha))
}

/// An encoded descriptor set with every method not in `public` removed,
/// and every service left without methods.
fn only_public(set: &[u8], public: &std::collections::HashSet<String>) -> Result<Vec<u8>, String> {
    use prost::Message;
    let mut set = prost_types::FileDescriptorSet::decode(set)
        .map_err(|e| format!("reflection: bad descriptor set: {e}"))?;
    for file in &mut set.file {
        let package = file.package().to_owned();
        for service in &mut file.service {
            let prefix = if package.is_empty() {
                format!("/{}/", service.name())
            } else {
                format!("/{package}.{}/", service.name())
            };
            service
                .method
                .retain(|m| public.contains(&format!("{prefix}{}", m.name())));
        }
        file.service.retain(|s| !s.method.is_empty());
        // Comments may speak of what was removed.
        file.source_code_info = None;
    }
    Ok(set.encode_to_vec())
}
