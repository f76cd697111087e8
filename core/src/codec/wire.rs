//! MQTT data representations (spec section 1.5): integers, variable byte
//! integers, length-prefixed binary data and UTF-8 strings.
//!
//! [`Reader`] reads them from one packet body held as [`Bytes`], so binary
//! fields come out as zero-copy slices. Every read checks that the bytes are
//! present first; nothing is allocated from a declared length. The `put_*`
//! functions write them; the `*_len` functions give their encoded sizes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};

/// Largest value a variable byte integer can hold (four bytes).
pub const MAX_VARINT: u32 = 268_435_455;

/// Cursor over one packet body.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    /// What the rest of the packet may still spend on MQTT 5 user
    /// properties (see [`super::DecodeLimits`]).
    pub(crate) user_props: UserPropBudget,
}

/// User properties a packet may still carry: each decoded pair costs a
/// count and its key and value bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserPropBudget {
    pub count: u32,
    pub bytes: u32,
}

impl UserPropBudget {
    pub(crate) const UNLIMITED: UserPropBudget = UserPropBudget { count: u32::MAX, bytes: u32::MAX };

    /// Spends one pair of `len` bytes; false when the budget is exceeded.
    pub(crate) fn spend(&mut self, len: usize) -> bool {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        match (self.count.checked_sub(1), self.bytes.checked_sub(len)) {
            (Some(c), Some(b)) => {
                self.count = c;
                self.bytes = b;
                true
            }
            _ => false,
        }
    }
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, user_props: UserPropBudget::UNLIMITED }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer of at most four bytes (minimal encoding is
    /// not required).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"))
    }

    /// The next `n` bytes as a zero-copy slice.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data: two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// UTF-8 encoded string: well-formed, without U+0000.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.as_bytes().contains(&0) {
            return Err(DecodeError::NullCharInString);
        }
        Ok(s.to_owned())
    }

    /// Non-zero packet identifier.
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// Fails if any byte is left: the packet must end exactly here.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        }
    }
}

/// Encoded size of a variable byte integer.
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, v: usize) -> Result<(), EncodeError> {
    if v > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    let mut v = v;
    loop {
        // Lossless: masked to seven bits.
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if v == 0 {
            return Ok(());
        }
    }
}

/// Encoded size of a string or binary field.
pub(crate) fn binary_len(b: &[u8]) -> usize {
    2 + b.len()
}

pub(crate) fn put_binary(buf: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    let n = u16::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong)?;
    buf.put_u16(n);
    buf.put_slice(b);
    Ok(())
}

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    put_binary(buf, s.as_bytes())
}
