//! A small client for the CRI ImageService (`runtime.v1`), as the kubelet
//! calls it: gRPC over HTTP/2 on the runtime's unix socket.
//!
//! Only what `pullcred prepull` needs: `PullImage` and `ImageStatus`. The few
//! protobuf messages are encoded and decoded by hand ([`wire`]), with the
//! field numbers of k8s.io/cri-api `pkg/apis/runtime/v1/api.proto` (the same
//! subset and commit as tests/e2e/cri_api.proto); gRPC's length-prefixed
//! framing and status trailers are in [`grpc`]. Both are pure functions on
//! bytes, unit-tested against what protoc-generated code produces.
//!
//! Every call is bounded: a timeout per call, also sent to the runtime as
//! `grpc-timeout` so it stops pulling when we stop waiting. A call that times
//! out resets its stream (RST_STREAM CANCEL), which cancels the pull.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use kubelet_config::exec::AuthConfig;

/// The runtime's largest answer we read (gRPC's default receive limit).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// containerd's usual socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

const PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";
const IMAGE_STATUS: &str = "/runtime.v1.ImageService/ImageStatus";

/// What `ImageStatus` says of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
}

/// Why a CRI call failed. Never holds a credential: the request is not kept.
#[derive(Debug)]
#[non_exhaustive]
pub enum CriError {
    /// The socket could not be opened, or HTTP/2 could not start on it.
    Connect { socket: PathBuf, why: String },
    /// No answer within the call's timeout (the stream was cancelled).
    Timeout {
        method: &'static str,
        after: Duration,
    },
    /// The runtime answered with a non-OK gRPC status.
    Status {
        method: &'static str,
        code: u32,
        message: String,
    },
    /// The connection or the answer broke HTTP/2 or gRPC rules.
    Protocol { method: &'static str, why: String },
}

impl fmt::Display for CriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriError::Connect { socket, why } => {
                write!(f, "CRI socket {}: {why}", socket.display())
            }
            CriError::Timeout { method, after } => {
                write!(f, "{method}: no answer within {}s", after.as_secs_f32())
            }
            CriError::Status {
                method,
                code,
                message,
            } => write!(
                f,
                "{method}: rpc error: code = {} desc = {message}",
                grpc::code_name(*code)
            ),
            CriError::Protocol { method, why } => write!(f, "{method}: {why}"),
        }
    }
}

impl std::error::Error for CriError {}

/// One HTTP/2 connection to the runtime, driven by a current-thread runtime
/// that only runs inside our calls.
pub struct Client {
    rt: tokio::runtime::Runtime,
    send: h2::client::SendRequest<Bytes>,
}

impl Client {
    /// Connects to the runtime's socket within `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Client, CriError> {
        let err = |why: String| CriError::Connect {
            socket: socket.to_path_buf(),
            why,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| err(format!("starting the I/O runtime: {e}")))?;
        let path = socket.to_path_buf();
        let send = rt.block_on(async {
            let connect = async {
                let io = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let (send, conn) = h2::client::handshake(io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                // The connection runs as a task, polled whenever a call
                // below is waiting on the runtime.
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok::<_, String>(send)
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "connect: no answer within {}s",
                    timeout.as_secs_f32()
                )),
            }
        });
        Ok(Client {
            send: send.map_err(err)?,
            rt,
        })
    }

    /// `PullImage` for `image` (as the kubelet passes it: with its tag), with
    /// the credential the kubelet would send, or none. Returns the image
    /// reference the runtime gives (containerd: the image id).
    pub fn pull_image(
        &mut self,
        image: &str,
        auth: Option<&AuthConfig>,
        timeout: Duration,
    ) -> Result<String, CriError> {
        let request = wire::pull_image_request(image, auth);
        let answer = self.call(PULL_IMAGE, request, timeout)?;
        wire::pull_image_response(&answer).map_err(|why| CriError::Protocol {
            method: "PullImage",
            why: format!("decoding the answer: {why}"),
        })
    }

    /// `ImageStatus` for `image`: `None` when the runtime does not have it.
    pub fn image_status(
        &mut self,
        image: &str,
        timeout: Duration,
    ) -> Result<Option<ImageInfo>, CriError> {
        let answer = self.call(IMAGE_STATUS, wire::image_status_request(image), timeout)?;
        wire::image_status_response(&answer).map_err(|why| CriError::Protocol {
            method: "ImageStatus",
            why: format!("decoding the answer: {why}"),
        })
    }

    fn call(
        &mut self,
        path: &'static str,
        message: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CriError> {
        let method = path.rsplit('/').next().unwrap_or(path);
        let send = self.send.clone();
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, unary(send, path, method, message, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(CriError::Timeout {
                    method,
                    after: timeout,
                }),
            }
        })
    }
}

/// One unary gRPC call on its own HTTP/2 stream.
async fn unary(
    send: h2::client::SendRequest<Bytes>,
    path: &'static str,
    method: &'static str,
    message: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, CriError> {
    let broken = |what: &str, e: h2::Error| CriError::Protocol {
        method,
        why: format!("{what}: {e}"),
    };
    let mut send = send.ready().await.map_err(|e| broken("connection", e))?;
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://localhost{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-timeout", grpc::timeout_header(timeout))
        .header(
            http::header::USER_AGENT,
            concat!("pullcred/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
        .map_err(|e| CriError::Protocol {
            method,
            why: format!("building the request: {e}"),
        })?;
    let (response, mut body_out) = send
        .send_request(request, false)
        .map_err(|e| broken("sending the request", e))?;
    body_out
        .send_data(Bytes::from(grpc::frame(&message)), true)
        .map_err(|e| broken("sending the request", e))?;
    drop(message);
    let response = response
        .await
        .map_err(|e| broken("reading the answer", e))?;
    let (head, mut body) = response.into_parts();
    // A trailers-only answer (an error, usually) carries its status in the head.
    if let Some(status) = grpc::status(&head.headers) {
        return match status {
            (0, _) => Err(CriError::Protocol {
                method,
                why: "OK status with no message".into(),
            }),
            (code, message) => Err(CriError::Status {
                method,
                code,
                message,
            }),
        };
    }
    if head.status != http::StatusCode::OK {
        return Err(CriError::Protocol {
            method,
            why: format!("HTTP status {} (not a gRPC server?)", head.status),
        });
    }
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| broken("reading the answer", e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_MESSAGE + 5 {
            return Err(CriError::Protocol {
                method,
                why: format!("answer over {MAX_MESSAGE} bytes"),
            });
        }
        data.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| broken("reading the trailers", e))?;
    match trailers.as_ref().and_then(grpc::status) {
        None => Err(CriError::Protocol {
            method,
            why: "the answer ended without a grpc-status".into(),
        }),
        Some((0, _)) => grpc::unframe(&data).map_err(|why| CriError::Protocol { method, why }),
        Some((code, message)) => Err(CriError::Status {
            method,
            code,
            message,
        }),
    }
}

/// gRPC over HTTP/2: message framing and status (grpc/grpc
/// doc/PROTOCOL-HTTP2.md).
pub mod grpc {
    use std::time::Duration;

    /// One uncompressed length-prefixed message: flag 0, 4-byte big-endian length.
    pub fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + 5);
        out.push(0);
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    /// The single message of a unary answer's body.
    pub fn unframe(body: &[u8]) -> Result<Vec<u8>, String> {
        if body.len() < 5 {
            return Err(format!(
                "the answer holds {} byte(s), not a gRPC message",
                body.len()
            ));
        }
        if body[0] != 0 {
            return Err("the answer is compressed, and we asked for no compression".into());
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if len > super::MAX_MESSAGE {
            return Err(format!("answer over {} bytes", super::MAX_MESSAGE));
        }
        match body.len() - 5 {
            n if n == len => Ok(body[5..].to_vec()),
            n if n < len => Err(format!("the answer is cut short: {n} of {len} byte(s)")),
            _ => Err("more than one message in a unary answer".into()),
        }
    }

    /// `grpc-status` and the percent-decoded `grpc-message`, if the headers
    /// carry a status. A malformed status is code 2 (Unknown).
    pub fn status(headers: &http::HeaderMap) -> Option<(u32, String)> {
        let code = headers.get("grpc-status")?;
        let code = code
            .to_str()
            .ok()
            .and_then(|c| c.trim().parse::<u32>().ok())
            .unwrap_or(2);
        let message = headers
            .get("grpc-message")
            .map(|m| one_line(&percent_decode(m.as_bytes())))
            .unwrap_or_default();
        Some((code, message))
    }

    /// `grpc-message` is percent-encoded UTF-8.
    pub fn percent_decode(raw: &[u8]) -> String {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'%'
                && i + 2 < raw.len()
                && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(raw[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Control characters (newlines included) become spaces; at most 1000
    /// characters are kept, so the error stays one readable line.
    pub fn one_line(s: &str) -> String {
        let mut out: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(1000)
            .collect();
        if s.chars().count() > 1000 {
            out.push_str("...");
        }
        out
    }

    /// `grpc-timeout`: at most 8 digits and a unit.
    pub fn timeout_header(t: Duration) -> String {
        let ms = t.as_millis().max(1);
        if ms <= 99_999_999 {
            format!("{ms}m")
        } else {
            format!("{}S", t.as_secs().min(99_999_999))
        }
    }

    /// The name Go's grpc prints for a status code.
    pub fn code_name(code: u32) -> String {
        let name = match code {
            0 => "OK",
            1 => "Canceled",
            2 => "Unknown",
            3 => "InvalidArgument",
            4 => "DeadlineExceeded",
            5 => "NotFound",
            6 => "AlreadyExists",
            7 => "PermissionDenied",
            8 => "ResourceExhausted",
            9 => "FailedPrecondition",
            10 => "Aborted",
            11 => "OutOfRange",
            12 => "Unimplemented",
            13 => "Internal",
            14 => "Unavailable",
            15 => "DataLoss",
            16 => "Unauthenticated",
            other => return format!("Code({other})"),
        };
        name.to_string()
    }
}

/// The protobuf messages, by hand. Field numbers: k8s.io/cri-api
/// pkg/apis/runtime/v1/api.proto (see tests/e2e/cri_api.proto).
pub mod wire {
    use super::{AuthConfig, ImageInfo};

    const VARINT: u8 = 0;
    const I64: u8 = 1;
    const LEN: u8 = 2;
    const I32: u8 = 5;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(out: &mut Vec<u8>, field: u32, value: &[u8]) {
        varint(out, u64::from(field) << 3 | u64::from(LEN));
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    /// proto3: an empty string is not written.
    fn string_field(out: &mut Vec<u8>, field: u32, value: &str) {
        if !value.is_empty() {
            bytes_field(out, field, value.as_bytes());
        }
    }

    /// `ImageSpec { string image = 1; }` (annotations = 2,
    /// user_specified_image = 18, runtime_handler = 19 not sent).
    fn image_spec(image: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string_field(&mut out, 1, image);
        out
    }

    /// `PullImageRequest { ImageSpec image = 1; AuthConfig auth = 2; }`
    /// (sandbox_config = 3 not sent). `AuthConfig { username = 1; password
    /// = 2; }`: what the kubelet sets (auth = 3, server_address = 4,
    /// identity_token = 5, registry_token = 6 stay empty). With a credential,
    /// `auth` is present even if both strings are empty, as the kubelet's
    /// non-nil pointer is.
    pub fn pull_image_request(image: &str, auth: Option<&AuthConfig>) -> Vec<u8> {
        let mut out = Vec::new();
        bytes_field(&mut out, 1, &image_spec(image));
        if let Some(a) = auth {
            let mut ac = Vec::new();
            string_field(&mut ac, 1, &a.username);
            string_field(&mut ac, 2, &a.password);
            bytes_field(&mut out, 2, &ac);
        }
        out
    }

    /// `ImageStatusRequest { ImageSpec image = 1; bool verbose = 2; }`,
    /// verbose false (not written).
    pub fn image_status_request(image: &str) -> Vec<u8> {
        let mut out = Vec::new();
        bytes_field(&mut out, 1, &image_spec(image));
        out
    }

    /// A field read from a message.
    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed,
    }

    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn new(buf: &'a [u8]) -> Self {
            Reader { buf, pos: 0 }
        }

        fn varint(&mut self) -> Result<u64, String> {
            let mut v: u64 = 0;
            for shift in (0..64).step_by(7) {
                let b = *self
                    .buf
                    .get(self.pos)
                    .ok_or_else(|| "truncated varint".to_string())?;
                self.pos += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err("varint longer than 10 bytes".into())
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self
                .pos
                .checked_add(n)
                .filter(|e| *e <= self.buf.len())
                .ok_or_else(|| "truncated field".to_string())?;
            let s = &self.buf[self.pos..end];
            self.pos = end;
            Ok(s)
        }

        /// The next (field number, value), skipping nothing: the caller
        /// ignores the fields it does not know, as proto3 does.
        fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let key = self.varint()?;
            let (field, wire) = (key >> 3, (key & 7) as u8);
            if field == 0 {
                return Err("field number 0".into());
            }
            let value = match wire {
                VARINT => Value::Varint(self.varint()?),
                I64 => {
                    self.take(8)?;
                    Value::Fixed
                }
                LEN => {
                    let n = usize::try_from(self.varint()?)
                        .map_err(|_| "length out of range".to_string())?;
                    Value::Bytes(self.take(n)?)
                }
                I32 => {
                    self.take(4)?;
                    Value::Fixed
                }
                other => return Err(format!("unsupported wire type {other}")),
            };
            Ok(Some((field, value)))
        }
    }

    fn string(v: &[u8]) -> Result<String, String> {
        String::from_utf8(v.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
    }

    fn expect_bytes<'a>(field: &str, v: Value<'a>) -> Result<&'a [u8], String> {
        match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(format!("{field}: wrong wire type")),
        }
    }

    /// `PullImageResponse { string image_ref = 1; }`.
    pub fn pull_image_response(buf: &[u8]) -> Result<String, String> {
        let mut r = Reader::new(buf);
        let mut image_ref = String::new();
        while let Some((field, v)) = r.next()? {
            if field == 1 {
                image_ref = string(expect_bytes("image_ref", v)?)?;
            }
        }
        Ok(image_ref)
    }

    /// `ImageStatusResponse { Image image = 1; map<string,string> info = 2; }`:
    /// the image, or `None` when the runtime does not have it.
    pub fn image_status_response(buf: &[u8]) -> Result<Option<ImageInfo>, String> {
        let mut r = Reader::new(buf);
        let mut image = None;
        while let Some((field, v)) = r.next()? {
            if field == 1 {
                image = Some(image_message(expect_bytes("image", v)?)?);
            }
        }
        Ok(image)
    }

    /// `Image { string id = 1; repeated string repo_tags = 2; repeated
    /// string repo_digests = 3; uint64 size = 4; ... }`.
    fn image_message(buf: &[u8]) -> Result<ImageInfo, String> {
        let mut r = Reader::new(buf);
        let mut info = ImageInfo::default();
        while let Some((field, v)) = r.next()? {
            match field {
                1 => info.id = string(expect_bytes("Image.id", v)?)?,
                2 => info
                    .repo_tags
                    .push(string(expect_bytes("Image.repo_tags", v)?)?),
                3 => info
                    .repo_digests
                    .push(string(expect_bytes("Image.repo_digests", v)?)?),
                4 => match v {
                    Value::Varint(n) => info.size = n,
                    _ => return Err("Image.size: wrong wire type".into()),
                },
                _ => {}
            }
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn auth(user: &str, password: &str) -> AuthConfig {
        AuthConfig {
            username: user.into(),
            password: password.into(),
        }
    }

    // The reference bytes below are what protoc's Python classes
    // (grpcio-tools 1.85, generated from tests/e2e/cri_api.proto) serialise:
    //   pb.PullImageRequest(image=pb.ImageSpec(image=...), auth=...).SerializeToString().hex()

    #[test]
    fn pull_image_request_matches_protoc() {
        // image="registry.example.com/team/app:1.0", no auth
        assert_eq!(
            wire::pull_image_request("registry.example.com/team/app:1.0", None),
            hex("0a230a2172656769737472792e6578616d706c652e636f6d2f7465616d2f6170703a312e30")
        );
        // image="nginx:latest", auth=AuthConfig(username="AWS", password="p4ss")
        assert_eq!(
            wire::pull_image_request("nginx:latest", Some(&auth("AWS", "p4ss"))),
            hex("0a0e0a0c6e67696e783a6c6174657374120b0a03415753120470347373")
        );
        // image="x:1", auth present but empty (r.auth.SetInParent())
        assert_eq!(
            wire::pull_image_request("x:1", Some(&auth("", ""))),
            hex("0a050a03783a311200")
        );
        // a 207-byte image name: two-byte varint lengths (0xd2 0x01, 0xcf 0x01)
        let long = format!("r.io/{}:1", "a".repeat(200));
        let bytes = wire::pull_image_request(&long, None);
        assert_eq!(&bytes[..6], &hex("0ad2010acf01")[..]);
        assert_eq!(&bytes[6..], long.as_bytes());
    }

    #[test]
    fn image_status_request_matches_protoc() {
        // pb.ImageStatusRequest(image=pb.ImageSpec(image="nginx:latest"))
        assert_eq!(
            wire::image_status_request("nginx:latest"),
            hex("0a0e0a0c6e67696e783a6c6174657374")
        );
    }

    #[test]
    fn responses_from_protoc_decode() {
        // pb.PullImageResponse(image_ref="sha256:0123abcd")
        assert_eq!(
            wire::pull_image_response(&hex("0a0f7368613235363a3031323361626364")).unwrap(),
            "sha256:0123abcd"
        );
        assert_eq!(wire::pull_image_response(&[]).unwrap(), "");
        // pb.ImageStatusResponse(image=pb.Image(id="sha256:ab",
        //   repo_tags=["r.io/a:1","r.io/a:2"], repo_digests=["r.io/a@sha256:cd"],
        //   size=300, uid=Int64Value(value=0), username="",
        //   spec=ImageSpec(image="sha256:ab", annotations={"k":"v"}), pinned=True),
        //   info={"a":"b"}): unknown fields (uid, spec, pinned, info) skipped
        let status = hex(
            "0a4d0a097368613235363a61621208722e696f2f613a311208722e696f2f613a321a10722e696f2f61407368613235363a636420ac022a003a130a097368613235363a616212060a016b120176400112060a0161120162",
        );
        assert_eq!(
            wire::image_status_response(&status).unwrap(),
            Some(ImageInfo {
                id: "sha256:ab".into(),
                repo_tags: vec!["r.io/a:1".into(), "r.io/a:2".into()],
                repo_digests: vec!["r.io/a@sha256:cd".into()],
                size: 300,
            })
        );
        // pb.ImageStatusResponse(): the runtime does not have the image
        assert_eq!(wire::image_status_response(&[]).unwrap(), None);
    }

    #[test]
    fn a_hand_encoded_pull_image_response_decodes() {
        // field 1, wire type 2 (0x0a), length 7, "sha256:", then an unknown
        // varint field 9 (0x48) and an unknown fixed32 field 10 (0x55)
        let mut b = vec![0x0a, 7];
        b.extend_from_slice(b"sha256:");
        b.extend_from_slice(&[0x48, 0x96, 0x01, 0x55, 1, 2, 3, 4]);
        assert_eq!(wire::pull_image_response(&b).unwrap(), "sha256:");
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        for bad in [
            &[0x0a][..],                   // key, no length
            &[0x0a, 5, b'a'][..],          // length past the end
            &[0x0b][..],                   // wire type 3 (group)
            &[0x00, 0x01][..],             // field 0
            &[0x08, 0xff, 0xff, 0xff][..], // truncated varint
            &[0x0a, 2, 0xc3, 0x28][..],    // not UTF-8
            &[0x08, 0x01][..],             // image_ref as a varint
        ] {
            assert!(wire::pull_image_response(bad).is_err(), "{bad:?}");
        }
        // Image.size (4) as a length-delimited field
        assert!(wire::image_status_response(&[0x0a, 2, 0x22, 0x00]).is_err());
        assert_eq!(
            wire::image_status_response(&[0x0a, 2, 0x20, 0x0a])
                .unwrap()
                .map(|i| i.size),
            Some(10)
        );
    }

    #[test]
    fn framing_on_literal_bytes() {
        assert_eq!(grpc::frame(&[]), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            grpc::frame(&[0x0a, 0x01, b'x']),
            vec![0, 0, 0, 0, 3, 0x0a, 0x01, b'x']
        );
        let big = vec![7u8; 0x01_02_03];
        assert_eq!(&grpc::frame(&big)[..5], &[0, 0, 1, 2, 3]);
        assert_eq!(grpc::unframe(&[0, 0, 0, 0, 2, 9, 9]).unwrap(), vec![9, 9]);
        assert_eq!(grpc::unframe(&[0, 0, 0, 0, 0]).unwrap(), Vec::<u8>::new());
        assert!(grpc::unframe(&[]).is_err());
        assert!(grpc::unframe(&[0, 0, 0, 0, 3, 9]).is_err()); // cut short
        assert!(grpc::unframe(&[0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0]).is_err()); // two
        assert!(grpc::unframe(&[1, 0, 0, 0, 1, 9]).is_err()); // compressed
        assert!(grpc::unframe(&[0, 0xff, 0, 0, 0]).is_err()); // too large
        // round trip of a whole request
        let msg = wire::pull_image_request("nginx:latest", None);
        assert_eq!(grpc::unframe(&grpc::frame(&msg)).unwrap(), msg);
    }

    #[test]
    fn status_from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc::status(&h), None);
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(grpc::status(&h), Some((0, String::new())));
        h.insert("grpc-status", "2".parse().unwrap());
        h.insert(
            "grpc-message",
            "failed to pull: 401 Unauthorized%0Anext line %E2%9C%93 100%"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            grpc::status(&h),
            Some((
                2,
                "failed to pull: 401 Unauthorized next line \u{2713} 100%".into()
            ))
        );
        h.insert("grpc-status", "junk".parse().unwrap());
        assert_eq!(grpc::status(&h).map(|s| s.0), Some(2));
    }

    #[test]
    fn errors_read_like_go_grpc() {
        let e = CriError::Status {
            method: "PullImage",
            code: 5,
            message: "not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "PullImage: rpc error: code = NotFound desc = not found"
        );
        assert_eq!(grpc::code_name(99), "Code(99)");
        assert_eq!(grpc::timeout_header(Duration::from_secs(600)), "600000m");
        assert_eq!(grpc::timeout_header(Duration::ZERO), "1m");
        assert_eq!(
            grpc::timeout_header(Duration::from_secs(200_000)),
            "200000S"
        );
        assert_eq!(grpc::one_line(&"x".repeat(1001)).len(), 1003);
    }

    /// A gRPC server on a unix socket, speaking HTTP/2 with h2's server
    /// side: PullImage answers an image_ref after checking the request
    /// bytes; ImageStatus answers trailers-only NotFound; anything else
    /// never answers. Returns the socket path.
    fn fake_runtime(expect_pull: Vec<u8>) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pullcred-cri-fake-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cri.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
                let (io, _) = listener.accept().await.unwrap();
                let mut conn = h2::server::handshake(io).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let expect = expect_pull.clone();
                    tokio::spawn(async move {
                        let (head, mut body) = req.into_parts();
                        assert_eq!(head.headers["content-type"], "application/grpc");
                        assert_eq!(head.headers["te"], "trailers");
                        assert!(head.headers.contains_key("grpc-timeout"));
                        let mut got = Vec::new();
                        while let Some(Ok(c)) = body.data().await {
                            got.extend_from_slice(&c);
                        }
                        let ok = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc");
                        match head.uri.path() {
                            "/runtime.v1.ImageService/PullImage" => {
                                let (code, message) = if grpc::unframe(&got).unwrap() == expect {
                                    ("0", "")
                                } else {
                                    ("3", "unexpected%20request")
                                };
                                let mut out =
                                    respond.send_response(ok.body(()).unwrap(), false).unwrap();
                                // field 1, "sha256:beef"
                                let mut msg = vec![0x0a, 11];
                                msg.extend_from_slice(b"sha256:beef");
                                if code == "0" {
                                    out.send_data(Bytes::from(grpc::frame(&msg)), false)
                                        .unwrap();
                                }
                                let mut t = http::HeaderMap::new();
                                t.insert("grpc-status", code.parse().unwrap());
                                t.insert("grpc-message", message.parse().unwrap());
                                out.send_trailers(t).unwrap();
                            }
                            "/runtime.v1.ImageService/ImageStatus" => {
                                let only = ok
                                    .header("grpc-status", "5")
                                    .header("grpc-message", "no%20such%20image")
                                    .body(())
                                    .unwrap();
                                respond.send_response(only, true).unwrap();
                            }
                            _ => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                        }
                    });
                }
            });
        });
        path
    }

    #[test]
    fn unary_calls_against_an_h2_grpc_server() {
        let a = auth("AWS", "p4ss");
        let sock = fake_runtime(wire::pull_image_request("nginx:latest", Some(&a)));
        let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
        // data, then trailers with grpc-status 0
        assert_eq!(
            c.pull_image("nginx:latest", Some(&a), Duration::from_secs(5))
                .unwrap(),
            "sha256:beef"
        );
        // grpc-status in the trailers
        let e = c
            .pull_image("nginx:latest", None, Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "PullImage: rpc error: code = InvalidArgument desc = unexpected request"
        );
        // trailers-only answer
        let e = c
            .image_status("nginx:latest", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ImageStatus: rpc error: code = NotFound desc = no such image"
        );
        // no answer: the call's timeout, and the connection still works
        let e = c
            .call(
                "/runtime.v1.ImageService/Slow",
                Vec::new(),
                Duration::from_millis(200),
            )
            .unwrap_err();
        assert!(matches!(e, CriError::Timeout { .. }), "{e}");
        assert_eq!(
            c.pull_image("nginx:latest", Some(&a), Duration::from_secs(5))
                .unwrap(),
            "sha256:beef"
        );
    }

    #[test]
    fn a_missing_socket_is_a_connect_error() {
        let dir = std::env::temp_dir().join(format!("pullcred-cri-{}", std::process::id()));
        let e = match Client::connect(&dir.join("no.sock"), Duration::from_secs(2)) {
            Err(e) => e,
            Ok(_) => panic!("connected to nothing"),
        };
        assert!(matches!(e, CriError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("no.sock: connect:"), "{e}");
    }
}
