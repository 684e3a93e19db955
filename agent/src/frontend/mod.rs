//! Front ends: protocols that reach the service layer. Each maps its own
//! messages onto `service` calls and the service's errors onto its codes.
//!
//! - [`quic`]: silt's own protocol over QUIC (TLS always on).

pub mod quic;
