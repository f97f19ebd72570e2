//! TLS 1.3's record layer after the handshake (RFC 8446 section 5): what
//! lets an idle TLS connection hold its keys as a few bytes of secret
//! rather than rustls's whole connection.
//!
//! rustls runs the handshake; then [`super::tls`] turns the connection
//! into a [`KernelConnection`] (rustls's API for kTLS), which keeps only
//! what a key update needs, and hands the traffic secrets here. From then
//! on this module protects records with ring's AEAD, exactly as RFC 8446
//! section 5.2 lays them out: `iv XOR sequence` as the nonce, the record
//! header as the additional data, the content type inside the encryption.
//! Each direction keeps its key *material* (at most 32 bytes and a 12-byte
//! IV) and builds ring's expanded key (544 bytes) when it is first used;
//! [`Records::cool`], which the worker's sweep calls every quarter second
//! through the connection, drops the expanded keys of a connection unused
//! since the last call. A busy connection builds its keys once; an idle
//! one holds none.
//!
//! What the peer may send after the handshake, and what is done with it:
//! application data (delivered), `KeyUpdate` (the receive key moves on;
//! one asking for ours gets ours before our next data, once however often
//! it was asked meanwhile, RFC 8446 section 4.6.3),
//! `close_notify` (the end) and `user_canceled` (ignored, a few times);
//! anything else is a fatal alert sent back and an error. TLS 1.2
//! connections never come here: rustls keeps their whole record layer.
//!
//! The send key is refreshed (a `KeyUpdate` of our own) before it has
//! protected as many records as the cipher suite's confidentiality limit
//! allows, which rustls would otherwise have tracked.

use std::io::{self, ErrorKind};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, SupportedCipherSuite};

/// The largest plaintext in one record (RFC 8446 section 5.1).
const MAX_FRAGMENT: usize = 1 << 14;
/// The largest ciphertext one record may carry (section 5.2): the
/// fragment, its content type, padding and tag.
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
const HEADER: usize = 5;
/// The longest AEAD tag of the three ciphers (all 16 bytes).
const MAX_TAG: usize = 16;

// Content types (section 5.1) and the handshake type this layer knows.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const KEY_UPDATE: u8 = 24;

// Alert descriptions (section 6).
const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const ILLEGAL_PARAMETER: u8 = 47;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
const USER_CANCELED: u8 = 90;

/// Key updates the peer may send between two records of data, and
/// `user_canceled` alerts in all: rustls's and BoringSSL's bounds, so
/// that a peer cannot keep the connection busy with them.
const KEY_UPDATES_BETWEEN_DATA: u8 = 32;
const WARNING_ALERTS: u8 = 4;

/// Records one send key protects before it is replaced: the suite's
/// confidentiality limit, less a margin for the records that go out
/// with the update.
fn send_limit(suite: SupportedCipherSuite) -> u64 {
    suite
        .tls13()
        .map_or(u64::MAX, |s| s.common.confidentiality_limit)
        .saturating_sub(16)
}

/// A record the peer sent, once opened.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// Application data, handed to the caller's `deliver`.
    Data,
    /// Protocol traffic this layer handled (a key update, a warning).
    Handled,
    /// The peer's `close_notify`: nothing after it is read.
    Closed,
}

/// One direction's key: the secret as rustls derived it, the next
/// record's sequence number, and ring's expanded key while in use.
struct Half {
    key: rustls::crypto::cipher::AeadKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    expanded: Option<Box<LessSafeKey>>,
}

impl Half {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<(Self, Cipher), io::Error> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => {
                return Err(io::Error::other(
                    "TLS cipher suite without a record layer here",
                ));
            }
        };
        let mut nonce_iv = [0; aead::NONCE_LEN];
        nonce_iv.copy_from_slice(iv.as_ref());
        let half = Self {
            key,
            iv: nonce_iv,
            seq,
            expanded: None,
        };
        Ok((half, cipher))
    }

    /// The nonce of the next record, and the sequence number moved on.
    fn next_nonce(&mut self) -> Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(nonce)
    }

    /// ring's key, built now if the connection was idle.
    fn expanded(&mut self, cipher: Cipher) -> io::Result<&LessSafeKey> {
        if self.expanded.is_none() {
            let unbound = UnboundKey::new(cipher.algorithm(), self.key.as_ref())
                .map_err(|_| io::Error::other("TLS traffic key of the wrong length"))?;
            self.expanded = Some(Box::new(LessSafeKey::new(unbound)));
        }
        match &self.expanded {
            Some(key) => Ok(key),
            None => Err(io::Error::other("TLS traffic key missing")),
        }
    }
}

/// The AEAD of the negotiated suite (all three of TLS 1.3's with ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// Whether this layer can take over a connection that negotiated `suite`:
/// TLS 1.3 with one of the three AEADs ring has.
pub(super) fn takes(suite: SupportedCipherSuite) -> bool {
    use rustls::CipherSuite::*;
    matches!(
        suite.suite(),
        TLS13_AES_128_GCM_SHA256 | TLS13_AES_256_GCM_SHA384 | TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The record layer of one TLS 1.3 connection after its handshake.
pub(super) struct Records {
    /// rustls's remainder of the connection: the key schedule, for key
    /// updates.
    kernel: KernelConnection<ServerConnectionData>,
    cipher: Cipher,
    send: Half,
    receive: Half,
    /// Records a send key may protect before it is replaced.
    send_limit: u64,
    key_updates_left: u8,
    warnings_left: u8,
    /// Used since the last [`Records::cool`].
    used: bool,
    /// Handed to the sweep, which calls `cool` until the keys are dropped.
    warm: bool,
    /// A fatal alert went out, or the peer's came: nothing more is done.
    failed: bool,
    /// Our `close_notify` went out: nothing more is sent.
    send_closed: bool,
    /// The peer asked for a key update of ours: it goes before our next
    /// record of data.
    update_owed: bool,
}

impl Records {
    /// Takes over from rustls with the secrets it extracted.
    pub(super) fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> io::Result<Self> {
        let (send_seq, send) = secrets.tx;
        let (receive_seq, receive) = secrets.rx;
        let (send, cipher) = Half::new(send_seq, send)?;
        let (receive, _) = Half::new(receive_seq, receive)?;
        Ok(Self {
            send_limit: send_limit(kernel.negotiated_cipher_suite()),
            kernel,
            cipher,
            send,
            receive,
            key_updates_left: KEY_UPDATES_BETWEEN_DATA,
            warnings_left: WARNING_ALERTS,
            used: false,
            warm: false,
            failed: false,
            send_closed: false,
            update_owed: false,
        })
    }

    /// Whether ring's expanded keys are held now.
    #[cfg(test)]
    pub(super) fn holds_keys(&self) -> bool {
        self.send.expanded.is_some() || self.receive.expanded.is_some()
    }

    /// Lets a test go on after a refusal, as if on a new connection.
    #[cfg(test)]
    pub(super) fn forget_failure(&mut self) {
        self.failed = false;
    }

    /// The send key's next sequence number: 0 right after a key update.
    #[cfg(test)]
    pub(super) fn send_seq(&self) -> u64 {
        self.send.seq
    }

    #[cfg(test)]
    pub(super) fn set_send_limit(&mut self, records: u64) {
        self.send_limit = records;
    }

    /// True once after the keys were built while not under the sweep: the
    /// connection hands itself to its worker's sweep then.
    pub(super) fn take_warmed(&mut self) -> bool {
        if self.used && !self.warm {
            self.warm = true;
            return true;
        }
        false
    }

    /// Called by the sweep: drops the expanded keys if nothing used them
    /// since the last call. Returns whether the keys are still held
    /// (the sweep calls again next tick).
    pub(super) fn cool(&mut self) -> bool {
        if std::mem::take(&mut self.used) {
            return true;
        }
        self.send.expanded = None;
        self.receive.expanded = None;
        self.warm = false;
        false
    }

    fn refuse(&mut self, out: &mut Vec<u8>, description: u8, why: &str) -> io::Error {
        // The alert is best effort: the error is what counts. After our
        // `close_notify` nothing more is sent.
        if !self.send_closed {
            let _ = self.seal_record(ALERT, &[2, description], out);
        }
        self.failed = true;
        io::Error::new(ErrorKind::InvalidData, format!("TLS: {why}"))
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "the TLS connection failed",
            ));
        }
        Ok(())
    }

    /// Encrypts `data` as application data records into `out`.
    pub(super) fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.check_usable()?;
        if self.send_closed {
            return Err(io::Error::new(
                ErrorKind::BrokenPipe,
                "the TLS write side is closed",
            ));
        }
        if std::mem::take(&mut self.update_owed) {
            self.update_send_key(out)?;
        }
        let records = data.len().div_ceil(MAX_FRAGMENT).max(1);
        out.reserve(data.len() + records * (HEADER + 1 + MAX_TAG));
        for fragment in data.chunks(MAX_FRAGMENT) {
            self.seal_record(APPLICATION_DATA, fragment, out)?;
        }
        Ok(())
    }

    /// Encrypts a `close_notify` into `out`.
    pub(super) fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.check_usable()?;
        if std::mem::replace(&mut self.send_closed, true) {
            return Ok(());
        }
        // Level 1, "warning", as RFC 8446 section 6.1 has closure alerts.
        self.seal_record(ALERT, &[1, CLOSE_NOTIFY], out)
    }

    /// One record of `content_type` around `fragment` (at most
    /// `MAX_FRAGMENT` bytes), after a key update of our own where the send
    /// key has protected all it may.
    fn seal_record(
        &mut self,
        content_type: u8,
        fragment: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        if self.send.seq >= self.send_limit {
            self.update_send_key(out)?;
        }
        self.seal_one(content_type, fragment, out)
    }

    fn seal_one(&mut self, content_type: u8, fragment: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.used = true;
        let cipher = self.cipher;
        let tag_len = cipher.algorithm().tag_len();
        let length = fragment.len() + 1 + tag_len;
        let header = [
            APPLICATION_DATA,
            0x03,
            0x03,
            (length >> 8) as u8,
            length as u8,
        ];
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(fragment);
        out.push(content_type);
        let nonce = self.send.next_nonce();
        let sealed = self.send.expanded(cipher).and_then(|key| {
            key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start + HEADER..])
                .map_err(|_| io::Error::other("TLS record encryption failed"))
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(err) => {
                out.truncate(start);
                self.failed = true;
                Err(err)
            }
        }
    }

    /// Sends a `KeyUpdate` (not asking for one back) under the current
    /// send key, then moves to the next.
    fn update_send_key(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.seal_one(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(|err| {
            self.failed = true;
            io::Error::other(err)
        })?;
        self.send = Half::new(seq, secrets)?.0;
        Ok(())
    }

    /// Opens the whole records at the front of `incoming`, handing each
    /// record's application data to `deliver`, and writing into `out` what
    /// must go back (a key update's answer, a fatal alert). Returns how
    /// many bytes of `incoming` were used, and whether the peer closed
    /// (its `close_notify` ends the processing: nothing after it is read).
    pub(super) fn open(
        &mut self,
        incoming: &mut [u8],
        out: &mut Vec<u8>,
        mut deliver: impl FnMut(&[u8]),
    ) -> io::Result<(usize, bool)> {
        self.check_usable()?;
        let mut used = 0;
        loop {
            let rest = &mut incoming[used..];
            let Some(&[content_type, major, _minor, high, low]) = rest.get(..HEADER) else {
                return Ok((used, false));
            };
            let length = usize::from(u16::from_be_bytes([high, low]));
            if content_type != APPLICATION_DATA || major != 0x03 {
                // After the handshake every TLS 1.3 record is protected
                // and says it is application data (section 5.2).
                return Err(self.refuse(
                    out,
                    UNEXPECTED_MESSAGE,
                    "unprotected record after the handshake",
                ));
            }
            if length > MAX_CIPHERTEXT {
                return Err(self.refuse(out, RECORD_OVERFLOW, "record too large"));
            }
            if rest.len() < HEADER + length {
                return Ok((used, false));
            }
            let (header, body) = rest.split_at_mut(HEADER);
            let opened = self.open_one(header, &mut body[..length], out, &mut deliver)?;
            used += HEADER + length;
            if opened == Opened::Closed {
                return Ok((used, true));
            }
        }
    }

    fn open_one(
        &mut self,
        header: &[u8],
        body: &mut [u8],
        out: &mut Vec<u8>,
        deliver: &mut impl FnMut(&[u8]),
    ) -> io::Result<Opened> {
        self.used = true;
        let cipher = self.cipher;
        let nonce = self.receive.next_nonce();
        let mut aad = [0; HEADER];
        aad.copy_from_slice(header);
        let opened = match self.receive.expanded(cipher) {
            Ok(key) => key
                .open_in_place(nonce, Aad::from(aad), body)
                .map(|plain| plain.len()),
            Err(err) => {
                self.failed = true;
                return Err(err);
            }
        };
        let Ok(plain_len) = opened else {
            return Err(self.refuse(out, BAD_RECORD_MAC, "a record failed to decrypt"));
        };
        if plain_len > MAX_FRAGMENT + 1 {
            return Err(self.refuse(out, RECORD_OVERFLOW, "record too large"));
        }
        // The content type is the last byte that is not padding.
        let Some(type_at) = body[..plain_len].iter().rposition(|&b| b != 0) else {
            return Err(self.refuse(out, UNEXPECTED_MESSAGE, "a record without a content type"));
        };
        let content = &body[..type_at];
        match body[type_at] {
            APPLICATION_DATA => {
                self.key_updates_left = KEY_UPDATES_BETWEEN_DATA;
                deliver(content);
                Ok(Opened::Data)
            }
            HANDSHAKE => self.on_handshake(content, out),
            ALERT => self.on_alert(content, out),
            _ => Err(self.refuse(
                out,
                UNEXPECTED_MESSAGE,
                "a record of an unknown content type",
            )),
        }
    }

    /// After the handshake the peer may send one handshake message: a
    /// `KeyUpdate`, alone in its record since it changes the key of the
    /// next (section 5.1).
    fn on_handshake(&mut self, message: &[u8], out: &mut Vec<u8>) -> io::Result<Opened> {
        let request = match message {
            [KEY_UPDATE, 0, 0, 1, request] => *request,
            [KEY_UPDATE, ..] => {
                return Err(self.refuse(out, DECODE_ERROR, "a malformed KeyUpdate"));
            }
            _ => {
                return Err(self.refuse(
                    out,
                    UNEXPECTED_MESSAGE,
                    "a handshake message other than KeyUpdate after the handshake",
                ));
            }
        };
        if request > 1 {
            return Err(self.refuse(
                out,
                ILLEGAL_PARAMETER,
                "a KeyUpdate with an unknown request",
            ));
        }
        if self.key_updates_left == 0 {
            return Err(self.refuse(out, UNEXPECTED_MESSAGE, "too many KeyUpdates without data"));
        }
        self.key_updates_left -= 1;
        let (seq, secrets) = match self.kernel.update_rx_secret() {
            Ok(next) => next,
            Err(err) => return Err(self.refuse(out, INTERNAL_ERROR, &err.to_string())),
        };
        self.receive = Half::new(seq, secrets)?.0;
        // Asked for ours: it goes out before our next record of data
        // (section 4.6.3), so that reading never adds to what waits to be
        // sent: a client that asks again and again and never reads is
        // answered once, as the RFC has a silent side do.
        self.update_owed |= request == 1;
        Ok(Opened::Handled)
    }

    fn on_alert(&mut self, alert: &[u8], out: &mut Vec<u8>) -> io::Result<Opened> {
        let &[_level, description] = alert else {
            return Err(self.refuse(out, DECODE_ERROR, "a malformed alert"));
        };
        match description {
            CLOSE_NOTIFY => Ok(Opened::Closed),
            USER_CANCELED if self.warnings_left > 0 => {
                self.warnings_left -= 1;
                Ok(Opened::Handled)
            }
            _ => {
                // Every other alert is fatal in TLS 1.3 (section 6.2); none
                // is sent back.
                self.failed = true;
                Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("TLS: the client sent fatal alert {description}"),
                ))
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connections_record_layer_fits_768_bytes() {
        // rustls's kernel connection is 560 of them (its key schedule, 224
        // bytes, is boxed apart); mimalloc's size class above 720 is 768.
        let size = std::mem::size_of::<Records>();
        assert!(size <= 720, "Records is {size} bytes");
    }

    #[test]
    fn the_nonce_is_the_iv_xored_with_the_sequence_number() {
        // RFC 8446 section 5.3: the 64-bit sequence number, big-endian,
        // left-padded to the IV's length, XORed with it.
        let mut half = Half {
            key: rustls::crypto::cipher::AeadKey::from([0; 32]),
            iv: [0xa5; 12],
            seq: 0x0102_0304_0506_0708,
            expanded: None,
        };
        let nonce = half.next_nonce();
        assert_eq!(
            nonce.as_ref(),
            &[
                0xa5, 0xa5, 0xa5, 0xa5, 0xa4, 0xa7, 0xa6, 0xa1, 0xa0, 0xa3, 0xa2, 0xad
            ]
        );
        assert_eq!(half.seq, 0x0102_0304_0506_0709);
    }
}
