//! Any bytes from the uevent socket: the parser never panics, and whatever it
//! accepts the matcher handles without panicking; a parsed event's DEVPATH is
//! always an absolute sysfs path without `..` components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posbridge_drivers::hotplug::{parse_product, parse_uevent, Matcher, NodeKind, Target, UsbId};

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = parse_uevent(data) else {
        return;
    };
    assert!(ev.devpath.starts_with('/'));
    assert!(!ev.devpath.contains("/../"));
    if let Some(p) = &ev.product {
        let _ = parse_product(p);
    }
    let mut m = Matcher::new(
        vec![Target {
            device: "d".into(),
            kind: NodeKind::Tty,
            vid: 0x0403,
            pid: 0x6001,
            serial: None,
        }],
        vec![(0x1a86, 0x7523)],
    );
    m.add_usb(
        "/devices/usb1/1-2",
        UsbId {
            vid: 0x0403,
            pid: 0x6001,
            serial: Some("A".into()),
        },
    );
    let _ = m.handle(&ev, Some("A"));
    let _ = m.handle(&ev, None);
});
