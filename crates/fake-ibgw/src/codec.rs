//! Wire framing of the TWS API at server version 201+: the `API\0` + `v<min>..<max>` client hello,
//! the text handshake reply, and `[u32 BE length][u32 BE message id][payload]` frames whose id is
//! the canonical id + 200 when the payload is protobuf (tws_protocol.md §1).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// ibapi refuses frame bodies longer than this (`transport/common.rs` `MAX_FRAME_LENGTH`); so do we.
pub const MAX_FRAME_LEN: usize = 0x00FF_FFFF;
/// Wire id offset that marks a protobuf payload.
pub const PROTOBUF_OFFSET: u32 = 200;
/// The 4 bytes a client sends before its first frame.
pub const API_PREFIX: &[u8; 4] = b"API\0";

/// What can go wrong while reading or writing the wire format.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame body of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLarge { len: usize },
    #[error("client hello must start with API\\0, got {0:?}")]
    BadPrefix([u8; 4]),
    #[error("client version range {0:?} is not of the form v<min>..<max>")]
    BadVersionRange(String),
    #[error("frame body of {len} bytes cannot hold a 4-byte message id")]
    ShortBody { len: usize },
    #[error("handshake reply {0:?} is not \"<version>\\0<time>\\0\"")]
    BadHandshakeReply(String),
    #[error("message id {wire_id}: protobuf payload does not decode: {source}")]
    Decode {
        wire_id: u32,
        #[source]
        source: prost::DecodeError,
    },
}

/// The client's opening: the version range it accepts and any connect options after a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub min_version: i32,
    pub max_version: i32,
    pub options: Option<String>,
}

impl ClientHello {
    /// Parses `v<min>..<max>[ <options>]`; a bare `v<n>` means min = max = n.
    pub fn parse(text: &str) -> Result<Self, CodecError> {
        let bad = || CodecError::BadVersionRange(text.to_string());
        let (range, options) = match text.split_once(' ') {
            Some((r, o)) => (r, Some(o.to_string())),
            None => (text, None),
        };
        let range = range.strip_prefix('v').ok_or_else(bad)?;
        let (min, max) = match range.split_once("..") {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let min_version = min.trim().parse().map_err(|_| bad())?;
        let max_version = max.trim().parse().map_err(|_| bad())?;
        Ok(Self {
            min_version,
            max_version,
            options,
        })
    }

    pub fn accepts(&self, server_version: i32) -> bool {
        (self.min_version..=self.max_version).contains(&server_version)
    }
}

/// Prefixes `body` with its u32 BE length.
pub fn frame(body: &[u8]) -> Result<Vec<u8>, CodecError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge { len: body.len() });
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    // The length fits in u32: it is at most MAX_FRAME_LEN.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// A protobuf body: `[canonical id + 200][payload]`.
pub fn proto_body(canonical_id: u32, msg: &impl prost::Message) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + msg.encoded_len());
    body.extend_from_slice(&(canonical_id + PROTOBUF_OFFSET).to_be_bytes());
    msg.encode(&mut body)
        .unwrap_or_else(|_| unreachable!("Vec<u8> grows on demand"));
    body
}

/// Splits a body into its wire message id and payload.
pub fn split_body(body: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match body.split_first_chunk::<4>() {
        Some((id, rest)) => Ok((u32::from_be_bytes(*id), rest)),
        None => Err(CodecError::ShortBody { len: body.len() }),
    }
}

/// The client's hello bytes: `API\0` then one frame holding `v<min>..<max>`.
pub fn client_hello_bytes(min_version: i32, max_version: i32) -> Vec<u8> {
    let mut out = API_PREFIX.to_vec();
    let range = format!("v{min_version}..{max_version}");
    out.extend_from_slice(&(range.len() as u32).to_be_bytes());
    out.extend_from_slice(range.as_bytes());
    out
}

/// The handshake reply body, `"<serverVersion>\0<connection time>\0"` (no message id, even at v201+).
pub fn handshake_reply_body(server_version: i32, connection_time: &str) -> Vec<u8> {
    format!("{server_version}\0{connection_time}\0").into_bytes()
}

/// Parses a handshake reply body into (server version, connection time).
pub fn parse_handshake_reply(body: &[u8]) -> Result<(i32, String), CodecError> {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut fields = text.split('\0');
    let version = fields.next().and_then(|v| v.parse().ok());
    let time = fields.next();
    match (version, time) {
        (Some(v), Some(t)) => Ok((v, t.to_string())),
        _ => Err(CodecError::BadHandshakeReply(text)),
    }
}

/// Buffers socket bytes and hands out whole frames. Cancel-safe: bytes are only consumed once a
/// whole item is buffered, and `read_buf` never loses data, so it can sit in a `select!`.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `API\0` prefix and the version-range frame. `Ok(None)` on EOF first.
    pub async fn read_hello<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> Result<Option<ClientHello>, CodecError> {
        loop {
            if let Some(prefix) = self.buf.first_chunk::<4>() {
                if prefix != API_PREFIX {
                    return Err(CodecError::BadPrefix(*prefix));
                }
                if let Some(body) = self.take_frame_at(4)? {
                    return ClientHello::parse(&String::from_utf8_lossy(&body)).map(Some);
                }
            }
            if r.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads one frame body. `Ok(None)` on EOF (a partial frame at EOF is also treated as EOF).
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> Result<Option<Vec<u8>>, CodecError> {
        loop {
            if let Some(body) = self.take_frame_at(0)? {
                return Ok(Some(body));
            }
            if r.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Takes `skip` bytes plus one whole frame from the buffer, if all of it is there.
    fn take_frame_at(&mut self, skip: usize) -> Result<Option<Vec<u8>>, CodecError> {
        let Some(len_bytes) = self.buf.get(skip..skip + 4) else {
            return Ok(None);
        };
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(CodecError::FrameTooLarge { len });
        }
        if self.buf.len() < skip + 4 + len {
            return Ok(None);
        }
        self.buf.advance(skip + 4);
        Ok(Some(self.buf.split_to(len).to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ibapi_hello_range() {
        let h = ClientHello::parse("v213..226").unwrap();
        assert_eq!(
            (h.min_version, h.max_version, h.options.clone()),
            (213, 226, None)
        );
        assert!(h.accepts(213) && h.accepts(226) && !h.accepts(212) && !h.accepts(227));
        let h = ClientHello::parse("v100..187 +PACEAPI").unwrap();
        assert_eq!(h.options.as_deref(), Some("+PACEAPI"));
        assert!(ClientHello::parse("100..187").is_err());
        assert!(ClientHello::parse("vX..1").is_err());
    }

    #[test]
    fn frame_prefixes_big_endian_length() {
        assert_eq!(frame(b"abc").unwrap(), vec![0, 0, 0, 3, b'a', b'b', b'c']);
        assert!(matches!(
            frame(&vec![0u8; MAX_FRAME_LEN + 1]),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn reads_hello_then_frames_split_across_reads() {
        // The ibapi 5.5 hello captured in the probe: 41 50 49 00 | 00 00 00 09 | "v213..226".
        let mut bytes = client_hello_bytes(213, 226);
        assert_eq!(&bytes[..8], &[0x41, 0x50, 0x49, 0, 0, 0, 0, 9]);
        bytes.extend(frame(&[0, 0, 1, 15, 8, 7]).unwrap());
        let mut reader = FrameReader::new();
        let mut src = tokio_test_reader(bytes);
        let hello = reader.read_hello(&mut src).await.unwrap().unwrap();
        assert_eq!(hello.max_version, 226);
        let body = reader.read_frame(&mut src).await.unwrap().unwrap();
        assert_eq!(split_body(&body).unwrap(), (271, &[8u8, 7][..]));
        assert!(reader.read_frame(&mut src).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_oversized_length_prefix() {
        let mut src = tokio_test_reader(vec![0xFF, 0xFF, 0xFF, 0xFF, 1, 2]);
        let err = FrameReader::new().read_frame(&mut src).await.unwrap_err();
        assert!(matches!(
            err,
            CodecError::FrameTooLarge { len: 0xFFFF_FFFF }
        ));
    }

    /// A reader that yields one byte per read, to exercise reassembly.
    fn tokio_test_reader(bytes: Vec<u8>) -> impl AsyncRead + Unpin {
        struct OneByte(std::collections::VecDeque<u8>);
        impl AsyncRead for OneByte {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if let Some(b) = self.0.pop_front() {
                    buf.put_slice(&[b]);
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        OneByte(bytes.into())
    }

    #[test]
    fn handshake_reply_round_trips() {
        let body = handshake_reply_body(213, "20260101 12:00:00 UTC");
        assert_eq!(body, b"213\x0020260101 12:00:00 UTC\x00");
        assert_eq!(
            parse_handshake_reply(&body).unwrap(),
            (213, "20260101 12:00:00 UTC".into())
        );
    }
}
