//! Sans-IO MQTT codec for 3.1, 3.1.1 and 5.0.
//!
//! * `types` — the packets as plain values.
//! * `reason` — reason / return code constants.
//! * `error` — [`DecodeError`], mapped to CONNACK / DISCONNECT codes, and
//!   [`EncodeError`].
//! * `decode` — bytes → [`Packet`], strict validation, size limit checked
//!   from the fixed header before anything is buffered.
//! * `encode` — [`Packet`] → bytes, and the exact [`encoded_len`].
//! * `properties` — MQTT 5 property (de)serialisation and allow-lists.
//! * `wire` — integers, variable byte integers, strings, binary data.
//!
//! ```
//! use bytes::BytesMut;
//! use portcullis_core::codec::{decode, encode, Packet, ProtocolVersion};
//!
//! let mut out = BytesMut::new();
//! encode(&Packet::PingReq, ProtocolVersion::V311, &mut out).unwrap();
//! let p = decode(&mut out, Some(ProtocolVersion::V311), 1024).unwrap();
//! assert_eq!(p, Some(Packet::PingReq));
//! assert!(out.is_empty());
//! ```

mod decode;
mod encode;
mod error;
pub mod properties;
pub mod reason;
pub mod types;
mod wire;

#[cfg(test)]
mod tests;

pub use decode::{decode, peek_connect_version, DecodeLimits};
pub use encode::{encode, encoded_len, PublishRef};
pub use error::{DecodeError, EncodeError};
pub use properties::PropCtx;
pub use types::*;
pub use wire::MAX_VARINT as MAX_REMAINING_LENGTH;
