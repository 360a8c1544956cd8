//! The workload API as the agent serves it to module pods, and the sidecar that carries module
//! calls to it.
//!
//! ```text
//! module container ──unix socket──► workload proxy sidecar ──HTTPS + Bearer <pod SA token>──► agent
//!   (Azure IoT SDK)    (emptyDir,      (`ironedge workload-proxy`)   (TokenReview: namespace and
//!                       pod-local)                                     ServiceAccount = the module's)
//! ```
//!
//! The routes themselves are `ironedge-workload`'s; the agent plugs in the module keys it holds,
//! the edge CA and [`crate::caller_auth::TokenReviewAuth`].

pub mod proxy;
pub mod server;
