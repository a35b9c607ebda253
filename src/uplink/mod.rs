//! The HQ uplink. `outbox` holds every transaction durably until HQ has it;
//! the MQTT relay that drains it is the next piece (issue #6).

pub mod outbox;
