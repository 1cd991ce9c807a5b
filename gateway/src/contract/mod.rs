//! What the protos say, and nothing about serving it: the HTTP rules of
//! their `google.api.http` annotations ([`http_rule`]), the route table
//! built from them ([`routes`]), what a request field must hold
//! ([`rules`]), and the JSON <-> protobuf translation a route implies
//! ([`transcode`]). The data plane asks these questions; no
//! module here knows a connection, a color or a response.

pub mod http_rule;
pub mod routes;
pub mod rules;
pub mod transcode;

/// A message that does not fit its contract, and whose fault that is. The
/// data plane's error table turns it into a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub fault: Fault,
    pub message: String,
}

/// Who sent a message that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client's request is not a message of the method's input type.
    Request,
    /// The client asked for something the services do not speak.
    Unsupported,
    /// The service's answer is not a message of the method's output type.
    Response,
    /// The gateway could not write a decoded answer as JSON.
    Encoding,
}

impl Mismatch {
    fn of(fault: Fault, message: impl Into<String>) -> Self {
        Self {
            fault,
            message: message.into(),
        }
    }

    pub fn request(message: impl Into<String>) -> Self {
        Self::of(Fault::Request, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::of(Fault::Unsupported, message)
    }

    pub fn response(message: impl Into<String>) -> Self {
        Self::of(Fault::Response, message)
    }

    pub fn encoding(message: impl Into<String>) -> Self {
        Self::of(Fault::Encoding, message)
    }
}
