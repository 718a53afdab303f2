//! Host-side zone networking.
//!
//! A zone's network is always a network namespace holding a veth (prepared by CNI, by the
//! operator, or by the built-in bridge mode): [`netns`] creates a tap next to the veth,
//! redirects frames between the two with tc, and reads the addresses and routes the zone's
//! agent must configure ([`GuestNetwork`]); the VMM gets the tap as an open descriptor.

pub mod bridge;
pub mod config;
pub mod dns;
pub mod ipam;
pub mod netns;
pub mod ports;

pub use config::{DnsConfig, GuestInterface, GuestNetwork, GuestRoute, IpCidr, MacAddr};
