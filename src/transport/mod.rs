//! OS I/O only: open a device's byte stream, read chunks, write bytes.
//! Protocol work happens in `posbridge-drivers`; this layer never interprets bytes.

use crate::config::DeviceConfig;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// An open byte stream to one device.
pub enum Link<'a> {
    Serial(tokio_serial::SerialStream),
    /// Bytes posted to `/v1/devices/{id}/simulate`; writes go nowhere.
    Sim(&'a mut mpsc::Receiver<Vec<u8>>),
}

impl Link<'_> {
    /// Reads the next chunk; `None` at end of stream (the device went away).
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<Option<Vec<u8>>> {
        match self {
            Link::Serial(s) => match s.read(buf).await? {
                0 => Ok(None),
                n => Ok(Some(buf[..n].to_vec())),
            },
            Link::Sim(rx) => Ok(rx.recv().await),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Serial(s) => s.write_all(bytes).await,
            Link::Sim(_) => {
                tracing::trace!(bytes = bytes.len(), "sim device: write discarded");
                Ok(())
            }
        }
    }
}

/// Opens the transport a device is configured with.
pub async fn open<'a>(
    cfg: &DeviceConfig,
    sim: Option<&'a mut mpsc::Receiver<Vec<u8>>>,
) -> Result<Link<'a>, String> {
    match (cfg.transport_name(), sim) {
        ("sim", Some(rx)) => Ok(Link::Sim(rx)),
        ("serial", _) => {
            let path = cfg.path.as_deref().unwrap_or_default();
            let builder = serial_settings(cfg).map_err(|(k, why)| format!("{k}: {why}"))?;
            tokio_serial::SerialStream::open(&builder)
                .map(Link::Serial)
                .map_err(|e| serial_error(path, e))
        }
        (t, _) => Err(format!("transport {t:?} is not available in this build")),
    }
}

fn serial_error(path: &str, e: tokio_serial::Error) -> String {
    use tokio_serial::ErrorKind;
    match e.kind() {
        ErrorKind::NoDevice => format!("{path}: no such device (unplugged, or wrong path?)"),
        ErrorKind::Io(io::ErrorKind::NotFound) => {
            format!("{path}: no such device (unplugged, or wrong path?)")
        }
        ErrorKind::Io(io::ErrorKind::PermissionDenied) => format!(
            "{path}: permission denied; add the service user to group dialout or install udev/70-posbridge.rules"
        ),
        _ => format!("{path}: {e}"),
    }
}

/// The serial port settings a device asks for (baud, framing, flow control),
/// or the key that is wrong.
pub fn serial_settings(
    cfg: &DeviceConfig,
) -> Result<tokio_serial::SerialPortBuilder, (&'static str, String)> {
    use tokio_serial::{DataBits, FlowControl, Parity, StopBits};
    let data_bits = match cfg.data_bits.unwrap_or(8) {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        8 => DataBits::Eight,
        n => return Err(("data_bits", format!("{n} is not 5, 6, 7 or 8"))),
    };
    let parity = match cfg.parity.as_deref().unwrap_or("none") {
        "none" => Parity::None,
        "odd" => Parity::Odd,
        "even" => Parity::Even,
        p => return Err(("parity", format!("{p:?} is not none, odd or even"))),
    };
    let stop_bits = match cfg.stop_bits.unwrap_or(1) {
        1 => StopBits::One,
        2 => StopBits::Two,
        n => return Err(("stop_bits", format!("{n} is not 1 or 2"))),
    };
    let flow = match cfg.flow_control.as_deref().unwrap_or("none") {
        "none" => FlowControl::None,
        "software" => FlowControl::Software,
        "hardware" => FlowControl::Hardware,
        f => {
            return Err((
                "flow_control",
                format!("{f:?} is not none, software or hardware"),
            ))
        }
    };
    Ok(tokio_serial::new(
        cfg.path.as_deref().unwrap_or_default(),
        cfg.baud.unwrap_or(9600),
    )
    .data_bits(data_bits)
    .parity(parity)
    .stop_bits(stop_bits)
    .flow_control(flow))
}
