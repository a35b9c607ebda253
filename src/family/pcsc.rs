//! The `pcsc` family: contactless cards through pcscd. Its link does the
//! card work (src/transport/pcsc.rs); here is what its config asks for.

use super::Request;
use super::{bad, DriverSpec, FamilyOptions, KeyError, Make, OptionsType};
use crate::config::{DeviceConfig, Transport};
use posbridge_drivers::pcsc::{self as apdu, KeyType, ReadPlan};
use posbridge_drivers::Protocol;
use serde::Deserialize;

/// What the rest of the daemon needs to know about this family.
pub static SPEC: DriverSpec = DriverSpec {
    requests: &[Request::Read],
    ..DriverSpec::new("pcsc", &[Transport::Pcsc], OptionsType::of::<Options>())
};

/// A PC/SC reader's own keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Which readers, by name; `*` (the default) is every reader.
    pub reader: Option<String>,
    /// MIFARE Classic blocks to read on each tap.
    blocks: Option<Vec<u8>>,
    /// The 6-byte sector key for `blocks`, 12 hex digits.
    key: Option<String>,
    /// Which key `key` is (default A).
    key_type: Option<KeyType>,
}

impl Options {
    /// The MIFARE Classic blocks to read on each tap, with their key, or the
    /// key that is wrong.
    pub fn read_plan(&self) -> Result<Option<ReadPlan>, KeyError> {
        let Some(blocks) = &self.blocks else {
            return Ok(None);
        };
        let key = apdu::parse_key(self.key.as_deref().unwrap_or("FFFFFFFFFFFF"))
            .map_err(|e| bad("key", e))?;
        ReadPlan::new(blocks.clone(), key, self.key_type.unwrap_or_default())
            .map(Some)
            .map_err(|e| bad("blocks", e.to_string()))
    }
}

impl FamilyOptions for Options {
    fn make(self, _: &DeviceConfig, _: &Make) -> Result<Box<dyn Protocol>, KeyError> {
        self.read_plan()?;
        // The link reads the cards, and takes "read now" itself (Link::request_read).
        Ok(Box::new(super::LinkDoesTheWork))
    }
}
