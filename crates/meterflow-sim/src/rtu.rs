//! A Modbus RTU slave on a serial device or pty, serving the simulated
//! devices of a [`Bank`], optionally emulating the line speed: a byte costs
//! 11 bits of time, so an answer leaves after the request's frame time,
//! 3.5 characters of silence and its own frame time.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use meterflow_model::profile::Space;

use crate::server::{Bank, Fault};
use meterflow_model::clock::now_ms;

/// Modbus CRC-16 (polynomial 0xA001), sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Serve read requests (function 03/04) on `path` until the device fails.
/// Garbage is skipped by re-synchronising on the next valid 8-byte request.
pub fn serve_rtu(path: &Path, baud: u32, emulate_line: bool, bank: &Bank) -> std::io::Result<()> {
    let char_s = 11.0 / f64::from(baud.max(1));
    let mut port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut window: Vec<u8> = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    loop {
        port.read_exact(&mut byte)?;
        window.push(byte[0]);
        if window.len() > 8 {
            window.remove(0);
        }
        if window.len() < 8 || crc16(&window[..6]) != u16::from_le_bytes([window[6], window[7]]) {
            continue;
        }
        let arrived = Instant::now();
        let req: [u8; 8] = [
            window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7],
        ];
        window.clear();
        let Some(dev) = bank.devices.get(&req[0]).cloned() else {
            continue;
        };
        let space = match req[1] {
            3 => Space::Holding,
            4 => Space::Input,
            _ => {
                reply(
                    &mut port,
                    &exception(req[0], req[1], 1),
                    arrived,
                    char_s,
                    emulate_line,
                )?;
                continue;
            }
        };
        match dev.fault() {
            Fault::Silent => continue,
            Fault::Late(d) => std::thread::sleep(d),
            Fault::Exception(c) => {
                reply(
                    &mut port,
                    &exception(req[0], req[1], c),
                    arrived,
                    char_s,
                    emulate_line,
                )?;
                continue;
            }
            Fault::None | Fault::Sentinel => {}
        }
        let (start, count) = (
            u16::from_be_bytes([req[2], req[3]]),
            u16::from_be_bytes([req[4], req[5]]),
        );
        let frame = match dev.registers(space, start, count, now_ms(), bank.tz) {
            Ok(words) => {
                let mut f = vec![req[0], req[1], (words.len() * 2) as u8];
                for w in words {
                    f.extend_from_slice(&w.to_be_bytes());
                }
                f
            }
            Err(code) => exception(req[0], req[1], u8::from(code)),
        };
        reply(&mut port, &frame, arrived, char_s, emulate_line)?;
    }
}

fn exception(unit: u8, function: u8, code: u8) -> Vec<u8> {
    vec![unit, function | 0x80, code]
}

fn reply(
    port: &mut std::fs::File,
    frame: &[u8],
    arrived: Instant,
    char_s: f64,
    emulate_line: bool,
) -> std::io::Result<()> {
    let mut out = frame.to_vec();
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    if emulate_line {
        // Request (8 bytes) still arriving, 3.5 characters of silence, then the answer's bytes.
        let line = Duration::from_secs_f64((8.0 + 3.5 + out.len() as f64) * char_s);
        std::thread::sleep(line.saturating_sub(arrived.elapsed()));
    }
    port.write_all(&out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_of_a_known_frame() {
        // Read holding registers of unit 1, address 0, count 1: 01 03 00 00 00 01 → CRC 84 0A (sent 0x84, 0x0A).
        assert_eq!(
            super::crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x01]).to_le_bytes(),
            [0x84, 0x0A]
        );
    }
}
