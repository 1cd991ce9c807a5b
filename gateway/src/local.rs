//! The gRPC services the gateway answers itself: server reflection over
//! every contract it routes (so `grpcurl` works against the gateway with no
//! proto files) and health (NOT_SERVING while it drains).

use std::convert::Infallible;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::Service;

use crate::upstream::BoxBody;

#[derive(Clone)]
pub struct LocalGrpc {
    routes: Routes,
    health: HealthReporter,
}

impl std::fmt::Debug for LocalGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalGrpc")
    }
}

impl LocalGrpc {
    pub fn new(descriptor_sets: &[&[u8]]) -> Result<Self, String> {
        let mut v1 = tonic_reflection::server::Builder::configure();
        let mut v1alpha = tonic_reflection::server::Builder::configure();
        for set in descriptor_sets {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        let v1 = v1.build_v1().map_err(|e| format!("reflection: {e}"))?;
        let v1alpha = v1alpha
            .build_v1alpha()
            .map_err(|e| format!("reflection: {e}"))?;
        let (health, health_service) = tonic_health::server::health_reporter();
        Ok(Self {
            routes: Routes::new(v1)
                .add_service(v1alpha)
                .add_service(health_service),
            health,
        })
    }

    /// True for the paths answered here.
    pub fn handles(path: &str) -> bool {
        path.starts_with("/grpc.reflection.") || path.starts_with("/grpc.health.v1.Health/")
    }

    pub async fn call(&self, request: Request<Incoming>) -> Response<BoxBody> {
        let request = request.map(tonic::body::Body::new);
        let mut routes = self.routes.clone();
        let response: Result<Response<tonic::body::Body>, Infallible> = routes.call(request).await;
        match response {
            Ok(response) => response.map(|body| {
                body.map_err(|status| Box::new(status) as crate::upstream::BoxError)
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
