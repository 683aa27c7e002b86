//! Network helpers shared by inputs and outputs.

use std::io;

/// The kernel's index of a network interface, from sysfs.
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no network interface `{name}` ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not an interface index: {:?}", text.trim()),
        )
    })
}
