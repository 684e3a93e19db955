//! Front ends: protocols that reach the service layer. Each maps its own
//! messages onto `service` calls and the service's errors onto its codes.
//!
//! - [`quic`]: silt's own protocol over QUIC (TLS always on).
//! - [`kafka`]: Kafka's wire protocol over TCP or TLS, for Kafka clients.
//! - [`ops`]: HTTP for operators: Prometheus metrics and health probes.

pub mod kafka;
pub mod ops;
pub mod quic;
