//! SW3, the SAM's status byte in every answer (GA 467 names in comments).

use std::fmt;

/// What a response's SW3 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamStatus {
    /// `90` 操作成功.
    Ok,
    /// `9F` 寻找证/卡成功.
    FindOk,
    /// `91` 证/卡中此项无内容.
    NoSuchItem,
    /// `10` 接收业务终端数据的校验和错.
    ChecksumError,
    /// `11` 接收业务终端数据的长度错.
    LengthError,
    /// `21` 接收业务终端的命令错误.
    CommandError,
    /// `23` 越权操作.
    Unauthorised,
    /// `24` 无法识别的错误.
    UnknownError,
    /// `31` 证/卡认证机具失败.
    CardAuthFailed,
    /// `32` 机具认证证/卡失败.
    ReaderAuthFailed,
    /// `33` 信息验证错误.
    VerifyFailed,
    /// `37` 指纹信息验证错误.
    FingerprintError,
    /// `3F` 信息长度错误.
    InfoLengthError,
    /// `40` 无法识别的证/卡类型.
    UnknownCardType,
    /// `41` 读证/卡操作失败.
    ReadFailed,
    /// `47` 取随机数失败.
    RandomFailed,
    /// `60` SAM 自检失败.
    SelfTestFailed,
    /// `66` SAM 没经授权.
    SamNotAuthorised,
    /// `80` 寻找证/卡失败.
    NoCard,
    /// `81` 选取证/卡失败.
    SelectFailed,
    /// Any other value.
    Other(u8),
}

impl SamStatus {
    pub fn from_sw3(sw3: u8) -> SamStatus {
        match sw3 {
            0x90 => SamStatus::Ok,
            0x9F => SamStatus::FindOk,
            0x91 => SamStatus::NoSuchItem,
            0x10 => SamStatus::ChecksumError,
            0x11 => SamStatus::LengthError,
            0x21 => SamStatus::CommandError,
            0x23 => SamStatus::Unauthorised,
            0x24 => SamStatus::UnknownError,
            0x31 => SamStatus::CardAuthFailed,
            0x32 => SamStatus::ReaderAuthFailed,
            0x33 => SamStatus::VerifyFailed,
            0x37 => SamStatus::FingerprintError,
            0x3F => SamStatus::InfoLengthError,
            0x40 => SamStatus::UnknownCardType,
            0x41 => SamStatus::ReadFailed,
            0x47 => SamStatus::RandomFailed,
            0x60 => SamStatus::SelfTestFailed,
            0x66 => SamStatus::SamNotAuthorised,
            0x80 => SamStatus::NoCard,
            0x81 => SamStatus::SelectFailed,
            other => SamStatus::Other(other),
        }
    }

    pub fn sw3(self) -> u8 {
        match self {
            SamStatus::Ok => 0x90,
            SamStatus::FindOk => 0x9F,
            SamStatus::NoSuchItem => 0x91,
            SamStatus::ChecksumError => 0x10,
            SamStatus::LengthError => 0x11,
            SamStatus::CommandError => 0x21,
            SamStatus::Unauthorised => 0x23,
            SamStatus::UnknownError => 0x24,
            SamStatus::CardAuthFailed => 0x31,
            SamStatus::ReaderAuthFailed => 0x32,
            SamStatus::VerifyFailed => 0x33,
            SamStatus::FingerprintError => 0x37,
            SamStatus::InfoLengthError => 0x3F,
            SamStatus::UnknownCardType => 0x40,
            SamStatus::ReadFailed => 0x41,
            SamStatus::RandomFailed => 0x47,
            SamStatus::SelfTestFailed => 0x60,
            SamStatus::SamNotAuthorised => 0x66,
            SamStatus::NoCard => 0x80,
            SamStatus::SelectFailed => 0x81,
            SamStatus::Other(b) => b,
        }
    }

    /// Plain-English meaning.
    pub fn message(self) -> &'static str {
        match self {
            SamStatus::Ok => "ok",
            SamStatus::FindOk => "card found",
            SamStatus::NoSuchItem => "the card has no such item",
            SamStatus::ChecksumError => "reader got a request with a bad checksum",
            SamStatus::LengthError => "reader got a request with a bad length",
            SamStatus::CommandError => "reader got an unknown command",
            SamStatus::Unauthorised => "operation not authorised",
            SamStatus::UnknownError => "unknown error",
            SamStatus::CardAuthFailed => "card failed to authenticate the reader",
            SamStatus::ReaderAuthFailed => "reader failed to authenticate the card",
            SamStatus::VerifyFailed => "card data verification failed",
            SamStatus::FingerprintError => "fingerprint data verification failed",
            SamStatus::InfoLengthError => "card data length error",
            SamStatus::UnknownCardType => "unknown card type",
            SamStatus::ReadFailed => "reading the card failed",
            SamStatus::RandomFailed => "getting a random number from the card failed",
            SamStatus::SelfTestFailed => "SAM self-test failed",
            SamStatus::SamNotAuthorised => "SAM not authorised",
            SamStatus::NoCard => "no card",
            SamStatus::SelectFailed => "selecting the card failed",
            SamStatus::Other(_) => "unrecognised status",
        }
    }

    /// `90` or `9F`.
    pub fn is_success(self) -> bool {
        matches!(self, SamStatus::Ok | SamStatus::FindOk)
    }

    /// The security module itself is broken or unlicensed: nothing will read
    /// until someone fixes the reader.
    pub fn is_sam_fault(self) -> bool {
        matches!(
            self,
            SamStatus::SelfTestFailed | SamStatus::SamNotAuthorised
        )
    }
}

impl fmt::Display for SamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SW3 {:02X})", self.message(), self.sw3())
    }
}
