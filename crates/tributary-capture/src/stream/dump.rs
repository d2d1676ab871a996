//! A MariaDB binlog dump that asks for ANNOTATE_ROWS events (`BINLOG_SEND_ANNOTATE_ROWS_EVENT`).
//!
//! Why it exists: a MariaDB primary skips the ANNOTATE_ROWS event in front of every statement's
//! TABLE_MAP unless the replica asks for it, and `mysql_async` cannot ask (its COM_BINLOG_DUMP
//! keeps only the NON_BLOCK flag). On servers that fill `log_pos` in every header a skipped
//! event does no harm; with `binlog_legacy_event_pos=OFF` (MariaDB ≥ 11.4's default) the events
//! inside a transaction carry `log_pos` 0 and their positions must be counted from the stream —
//! which only works when no event of the file is left out. So for such servers the source opens
//! this dump instead: the MySQL protocol handshake (`mysql_native_password`, or no password),
//! the same session settings `mysql_async` makes, COM_REGISTER_SLAVE, COM_BINLOG_DUMP with
//! flag 2, then packets decoded by the same `mysql_common` event reader as `mysql_async`'s.
//!
//! `next` is cancel-safe (bytes are buffered before a packet is cut from them): the source polls
//! it under a timeout.

use std::io;

use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
use mysql_async::binlog::BinlogVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::CaptureError;

const MAX_PACKET: usize = 0xFF_FFFF;
/// `BINLOG_SEND_ANNOTATE_ROWS_EVENT` (MariaDB's COM_BINLOG_DUMP flag).
const SEND_ANNOTATE_ROWS: u16 = 2;

pub(crate) struct MariaDump {
    sock: TcpStream,
    buf: Vec<u8>,
    seq: u8,
    fde: FormatDescriptionEvent<'static>,
    ended: bool,
}

fn conn_err(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Connection(format!("binlog dump: {e}"))
}

/// An ERR packet (`0xFF`, code, `#`+sqlstate, message) as the error `mysql_async` would give.
fn server_err(p: &[u8]) -> CaptureError {
    let code = if p.len() >= 3 {
        u16::from_le_bytes([p[1], p[2]])
    } else {
        0
    };
    let mut msg = p.get(3..).unwrap_or(&[]);
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    let text = format!("ERROR {code}: {}", String::from_utf8_lossy(msg));
    match code {
        1044 | 1045 | 1142 | 1143 | 1227 => CaptureError::Privilege(format!(
            "{text} (grant the capture user SELECT, RELOAD, REPLICATION SLAVE, \
             REPLICATION CLIENT / BINLOG MONITOR)"
        )),
        1040 | 1053 | 1205 | 1213 | 1290 | 2006 | 2013 => CaptureError::Sql(text, true),
        // ER_MASTER_FATAL_ERROR_READING_BINLOG: the requested file/position/GTID is not there.
        1236 => CaptureError::Checkpoint(format!(
            "{text} — the binlog position tributary must resume from is not on the server \
             (purged, or the binlog was reset); run `tributary resnapshot -c <config>`"
        )),
        _ => CaptureError::Sql(text, false),
    }
}

impl MariaDump {
    /// Connect, authenticate, register as a replica and request the binlog from `file:pos`
    /// with ANNOTATE_ROWS events.
    pub(crate) async fn open(
        url: &str,
        replica_id: u32,
        heartbeat_ns: u128,
        file: &str,
        pos: u64,
        gtid_state: Option<&str>,
    ) -> Result<MariaDump, CaptureError> {
        let target = crate::mysqlconn::mysql_target(url)?;
        if !matches!(
            target.mode,
            crate::mysqlconn::SslMode::Disabled | crate::mysqlconn::SslMode::Preferred
        ) {
            return Err(CaptureError::Config(format!(
                "{}: this server's binlog is read by tributary's own dump connection (MariaDB >= 11.4 with binlog_legacy_event_pos=OFF), which has no TLS; use ssl-mode=PREFERRED/DISABLED for it, or set binlog_legacy_event_pos=ON (see README \"Security\")",
                target.describe()
            )));
        }
        let opts = target.plaintext;
        let sock = TcpStream::connect((opts.ip_or_hostname(), opts.tcp_port()))
            .await
            .map_err(conn_err)?;
        let _ = sock.set_nodelay(true);
        let mut d = MariaDump {
            sock,
            buf: Vec::with_capacity(1 << 16),
            seq: 0,
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            ended: false,
        };
        d.handshake(opts.user().unwrap_or(""), opts.pass().unwrap_or(""))
            .await?;
        let mut set = vec![
            "SET @master_binlog_checksum='ALL'".to_string(),
            "SET @mariadb_slave_capability = 4".to_string(),
            format!("SET @master_heartbeat_period = {heartbeat_ns}"),
        ];
        if let Some(state) = gtid_state {
            // Start from a GTID state (`domain-server-seq,…`): the server ignores file/pos.
            if !state
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == ',')
            {
                return Err(CaptureError::Checkpoint(format!(
                    "GTID state {state:?} is not a MariaDB GTID list (domain-server-seq,…)"
                )));
            }
            set.push(format!("SET @slave_connect_state = '{state}'"));
            set.push("SET @slave_gtid_strict_mode = 1".to_string());
        }
        for q in set {
            let mut p = vec![0x03];
            p.extend_from_slice(q.as_bytes());
            d.command(&p).await?;
            d.expect_ok().await?;
        }
        // COM_REGISTER_SLAVE: server id, empty host/user/password, port 0, rank 0, master id 0.
        let mut p = vec![0x15];
        p.extend_from_slice(&replica_id.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0; 8]);
        d.command(&p).await?;
        d.expect_ok().await?;
        // COM_BINLOG_DUMP: position (4 bytes), flags, server id, file name.
        let pos32 = u32::try_from(pos)
            .map_err(|_| CaptureError::Checkpoint(format!("binlog position {pos} beyond 4 GiB")))?;
        let mut p = vec![0x12];
        p.extend_from_slice(&pos32.to_le_bytes());
        p.extend_from_slice(&SEND_ANNOTATE_ROWS.to_le_bytes());
        p.extend_from_slice(&replica_id.to_le_bytes());
        p.extend_from_slice(file.as_bytes());
        d.command(&p).await?;
        Ok(d)
    }

    async fn handshake(&mut self, user: &str, pass: &str) -> Result<(), CaptureError> {
        let hs = self.packet().await?;
        if hs.first() == Some(&0xFF) {
            return Err(server_err(&hs));
        }
        let (nonce, plugin) = parse_handshake(&hs).ok_or_else(|| conn_err("bad handshake"))?;
        let auth = auth_response(&plugin, &nonce, pass)?;
        // HandshakeResponse41: LONG_PASSWORD | PROTOCOL_41 | TRANSACTIONS | SECURE_CONNECTION |
        // PLUGIN_AUTH; max packet; utf8mb4_general_ci; filler; user; auth; plugin.
        let caps: u32 = 0x1 | 0x200 | 0x2000 | 0x8000 | 0x8_0000;
        let mut r = Vec::with_capacity(64 + user.len());
        r.extend_from_slice(&caps.to_le_bytes());
        r.extend_from_slice(&(1u32 << 30).to_le_bytes());
        r.push(45);
        r.extend_from_slice(&[0; 23]);
        r.extend_from_slice(user.as_bytes());
        r.push(0);
        r.push(auth.len() as u8);
        r.extend_from_slice(&auth);
        r.extend_from_slice(b"mysql_native_password\0");
        self.write_packet(&r).await?;
        loop {
            let p = self.packet().await?;
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_err(&p)),
                // Auth switch: plugin name, new nonce.
                Some(0xFE) => {
                    let rest = &p[1..];
                    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    let plugin = String::from_utf8_lossy(&rest[..end]).into_owned();
                    let mut nonce = rest.get(end + 1..).unwrap_or(&[]).to_vec();
                    if nonce.last() == Some(&0) {
                        nonce.pop();
                    }
                    let auth = auth_response(&plugin, &nonce, pass)?;
                    self.write_packet(&auth).await?;
                }
                _ => {
                    return Err(CaptureError::Connection(
                        "binlog dump: unexpected authentication packet (tributary's MariaDB \
                         binlog reader supports mysql_native_password)"
                            .into(),
                    ))
                }
            }
        }
    }

    /// Start a command (sequence numbers restart) and send its packet.
    async fn command(&mut self, p: &[u8]) -> Result<(), CaptureError> {
        self.seq = 0;
        self.write_packet(p).await
    }

    async fn expect_ok(&mut self) -> Result<(), CaptureError> {
        let p = self.packet().await?;
        match p.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(server_err(&p)),
            _ => Err(conn_err("unexpected reply (expected OK)")),
        }
    }

    async fn write_packet(&mut self, p: &[u8]) -> Result<(), CaptureError> {
        // Commands sent here are small: one packet.
        let mut out = Vec::with_capacity(4 + p.len());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
        out.push(self.seq);
        out.extend_from_slice(p);
        self.seq = self.seq.wrapping_add(1);
        self.sock.write_all(&out).await.map_err(conn_err)
    }

    /// Cut one logical packet from the buffer, if complete.
    fn cut(&mut self) -> Option<Vec<u8>> {
        let (p, last_seq) = cut_packet(&mut self.buf)?;
        self.seq = last_seq.wrapping_add(1);
        Some(p)
    }

    /// The next packet; cancel-safe.
    async fn packet(&mut self) -> Result<Vec<u8>, CaptureError> {
        loop {
            if let Some(p) = self.cut() {
                return Ok(p);
            }
            self.buf.reserve(1 << 16);
            let n = self.sock.read_buf(&mut self.buf).await.map_err(conn_err)?;
            if n == 0 {
                return Err(conn_err(io::Error::from(io::ErrorKind::UnexpectedEof)));
            }
        }
    }

    /// The next binlog event; `None` when the server ended the stream. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Result<Event, CaptureError>> {
        if self.ended {
            return None;
        }
        let p = match self.packet().await {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        match p.first() {
            Some(0x00) => {}
            Some(0xFF) => return Some(Err(server_err(&p))),
            Some(0xFE) if p.len() < 8 => {
                self.ended = true;
                return None;
            }
            _ => return Some(Err(conn_err("unexpected packet in the binlog stream"))),
        }
        let ev = match Event::read(&self.fde, &p[1..]) {
            Ok(ev) => ev,
            Err(e) => return Some(Err(conn_err(format!("binlog event: {e}")))),
        };
        if ev.header().event_type_raw() == 15 {
            match ev.read_event::<FormatDescriptionEvent<'_>>() {
                Ok(f) => self.fde = f.into_owned().with_footer(ev.footer()),
                Err(e) => return Some(Err(conn_err(format!("format description: {e}")))),
            }
        }
        Some(Ok(ev))
    }
}

/// Cut one logical packet (its 16 MiB parts joined) from the front of `buf` when all of it is
/// there: `(payload, sequence number of its last part)`.
fn cut_packet(buf: &mut Vec<u8>) -> Option<(Vec<u8>, u8)> {
    let mut at = 0usize;
    let mut parts = 0usize;
    loop {
        let h = buf.get(at..at + 4)?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        if buf.len() < at + 4 + len {
            return None;
        }
        at += 4 + len;
        parts += 1;
        if len < MAX_PACKET {
            break;
        }
    }
    let mut out = Vec::with_capacity(at - 4 * parts);
    let mut p = 0usize;
    let mut seq = 0u8;
    while p < at {
        let len = u32::from_le_bytes([buf[p], buf[p + 1], buf[p + 2], 0]) as usize;
        out.extend_from_slice(&buf[p + 4..p + 4 + len]);
        seq = buf[p + 3];
        p += 4 + len;
    }
    buf.drain(..at);
    Some((out, seq))
}

/// `(nonce, auth plugin)` of a protocol-10 handshake.
fn parse_handshake(p: &[u8]) -> Option<(Vec<u8>, String)> {
    if *p.first()? != 10 {
        return None;
    }
    let mut i = 1 + p[1..].iter().position(|b| *b == 0)? + 1;
    i += 4; // connection id
    let mut nonce = p.get(i..i + 8)?.to_vec();
    i += 8 + 1;
    let caps_lo = u16::from_le_bytes([*p.get(i)?, *p.get(i + 1)?]) as u32;
    i += 2 + 1 + 2;
    let caps_hi = u16::from_le_bytes([*p.get(i)?, *p.get(i + 1)?]) as u32;
    i += 2;
    let caps = caps_lo | (caps_hi << 16);
    let data_len = *p.get(i)? as usize;
    i += 1 + 10;
    if caps & 0x8000 != 0 {
        let n = data_len.saturating_sub(8).max(13);
        let part = p.get(i..i + n)?;
        // The second part ends with a NUL that is not part of the nonce.
        nonce.extend_from_slice(part.strip_suffix(&[0]).unwrap_or(part));
        i += n;
    }
    let plugin = if caps & 0x8_0000 != 0 {
        let rest = p.get(i..).unwrap_or(&[]);
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    } else {
        "mysql_native_password".into()
    };
    Some((nonce, plugin))
}

fn auth_response(plugin: &str, nonce: &[u8], pass: &str) -> Result<Vec<u8>, CaptureError> {
    if pass.is_empty() {
        return Ok(vec![]);
    }
    match plugin {
        "mysql_native_password" | "" => Ok(mysql_common::scramble::scramble_native(
            nonce,
            pass.as_bytes(),
        )
        .map(|s| s.to_vec())
        .unwrap_or_default()),
        other => Err(CaptureError::Config(format!(
            "the capture user authenticates with {other}; tributary's MariaDB binlog reader \
             supports mysql_native_password (ALTER USER … IDENTIFIED VIA mysql_native_password \
             USING PASSWORD('…'))"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, seq: u8, fill: u8) -> Vec<u8> {
        let mut f = (len as u32).to_le_bytes()[..3].to_vec();
        f.push(seq);
        f.extend(std::iter::repeat(fill).take(len));
        f
    }

    #[test]
    fn packets_of_16_mib_and_more_are_joined_and_cut_only_when_whole() {
        // A 16 MiB - 1 part, a second full part, a 5-byte last part; then a small packet.
        let mut wire = frame(MAX_PACKET, 7, 1);
        wire.extend(frame(MAX_PACKET, 8, 2));
        wire.extend(frame(5, 9, 3));
        wire.extend(frame(3, 10, 4));
        // Arriving in pieces: nothing is cut before the last part is there.
        let mut buf = wire[..wire.len() - 7 - 6].to_vec();
        assert_eq!(cut_packet(&mut buf), None);
        buf.extend_from_slice(&wire[wire.len() - 7 - 6..]);
        let (p, seq) = cut_packet(&mut buf).unwrap();
        assert_eq!((p.len(), seq), (2 * MAX_PACKET + 5, 9));
        assert!(p[..MAX_PACKET].iter().all(|b| *b == 1));
        assert!(p[MAX_PACKET..2 * MAX_PACKET].iter().all(|b| *b == 2));
        assert_eq!(&p[2 * MAX_PACKET..], &[3; 5]);
        assert_eq!(cut_packet(&mut buf), Some((vec![4; 3], 10)));
        assert!(buf.is_empty());
        // A packet of exactly 16 MiB - 1 is followed by an empty last part.
        let mut buf = frame(MAX_PACKET, 0, 5);
        assert_eq!(cut_packet(&mut buf), None);
        buf.extend(frame(0, 1, 0));
        assert_eq!(
            cut_packet(&mut buf).map(|(p, s)| (p.len(), s)),
            Some((MAX_PACKET, 1))
        );
    }

    #[test]
    fn parses_a_mariadb_handshake() {
        // protocol 10, version, conn id, scramble 1, filler, caps lo, charset, status, caps hi,
        // auth data length 21, reserved, scramble 2 (12 + NUL), plugin name.
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-11.8.9-MariaDB\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh");
        p.push(0);
        p.extend_from_slice(&0xF7FEu16.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0x81BFu16.to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let (nonce, plugin) = parse_handshake(&p).unwrap();
        assert_eq!(nonce, b"abcdefghijklmnopqrst");
        assert_eq!(plugin, "mysql_native_password");
    }
}
