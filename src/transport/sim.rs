//! A simulated second-generation ID-card reader for `transport = "sim"`: the
//! driver's requests are answered by the drivers crate's `ReaderSim`, and
//! `POST /v1/devices/{id}/simulate` places or lifts a (fictitious) card.
//! This is what `make run` demos and what a POS developer builds against
//! without a reader on the desk.

use posbridge_drivers::idcard::{ReaderSim, TextLayout, PHOTO_LEN};
use posbridge_drivers::{IdCard, IdCardType};
use std::collections::VecDeque;
use tokio::sync::mpsc;

pub struct SimReader<'a> {
    rx: &'a mut mpsc::Receiver<Vec<u8>>,
    reader: ReaderSim,
    answers: VecDeque<Vec<u8>>,
}

impl<'a> SimReader<'a> {
    pub fn new(rx: &'a mut mpsc::Receiver<Vec<u8>>) -> SimReader<'a> {
        SimReader {
            rx,
            reader: ReaderSim::new(),
            answers: VecDeque::new(),
        }
    }

    /// The reader's next answer; simulate commands are handled in between.
    pub async fn read_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(a) = self.answers.pop_front() {
                return Some(a);
            }
            let input = self.rx.recv().await?;
            match String::from_utf8_lossy(&input).trim() {
                "place" => {
                    self.reader
                        .place_card(&demo_card(), TextLayout::Resident, &[0u8; PHOTO_LEN])
                }
                "lift" => self.reader.lift(),
                "silent" => self.reader.set_silent(true),
                "answer" => self.reader.set_silent(false),
                // Anything else arrives as if the reader had sent it.
                _ => return Some(input),
            }
        }
    }

    pub fn write(&mut self, request: &[u8]) {
        let answer = self.reader.handle_bytes(request);
        if !answer.is_empty() {
            self.answers.push_back(answer);
        }
    }
}

/// A made-up resident card (the number is the standard's own example format,
/// not a real person's).
pub fn demo_card() -> IdCard {
    IdCard {
        card_type: IdCardType::Resident,
        name: "张三".into(),
        gender: "男".into(),
        nation: "汉".into(),
        birth: "1990-01-01".into(),
        address: "北京市东城区示例路1号".into(),
        id_number: "110101199001011237".into(),
        authority: "北京市公安局东城分局".into(),
        valid_from: "2020-01-01".into(),
        valid_to: "长期".into(),
        photo_wlt: None,
        extra: Default::default(),
    }
}
