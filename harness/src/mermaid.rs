//! Mermaid sequence diagrams of a run: its messages, faults and lifecycle events, in the
//! notation the patterns' own design documents use.

use sim_core::trace::{Event, NodeEvent, Timeline};
use std::fmt::Write;

/// Messages drawn at most; a longer run is cut with a note (diagrams stay readable).
pub const MESSAGES_MAX: usize = 400;

/// A `sequenceDiagram` of `timeline`.
pub fn diagram(timeline: &Timeline) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let _ = writeln!(out, "    participant supervisor");
    for name in &timeline.node_names {
        let _ = writeln!(out, "    participant {}", ident(name));
    }
    let mut messages = 0;
    for event in &timeline.events {
        let at = sim_core::trace::format_time(event.time_ns);
        let here = ident(timeline.node_name(event.node));
        match &event.event {
            Event::Node(kind) => {
                let what = match kind {
                    NodeEvent::Start => "start",
                    NodeEvent::Crash => "CRASH",
                    NodeEvent::Restart => "restart",
                    NodeEvent::Pause => "PAUSE",
                    NodeEvent::Resume => "resume",
                    NodeEvent::Exit => "exit",
                };
                let _ = writeln!(out, "    Note over {here}: {at} {what}");
            }
            Event::Violation { invariant, message } => {
                let _ = writeln!(
                    out,
                    "    Note over {here}: {at} VIOLATION {} {}",
                    clean(invariant),
                    clean(message)
                );
            }
            Event::Fault { start, text, .. } => {
                let edge = if *start { "fault start" } else { "fault end" };
                let _ = writeln!(
                    out,
                    "    Note over supervisor: {at} {edge}: {}",
                    clean(text)
                );
            }
            Event::Note { key, text } if key == "healed" => {
                let _ = writeln!(out, "    Note over supervisor: {at} {}", clean(text));
            }
            Event::Error { message } => {
                let _ = writeln!(
                    out,
                    "    Note over supervisor: {at} ERROR {}",
                    clean(message)
                );
            }
            Event::Net(net) => {
                if let Some(line) = crate::apply_io::mermaid_line(timeline, net, &at) {
                    messages += 1;
                    if messages > MESSAGES_MAX {
                        let _ = writeln!(out, "    Note over supervisor: ... more messages cut");
                        break;
                    }
                    let _ = writeln!(out, "    {line}");
                }
            }
            _ => {}
        }
    }
    out
}

/// A Mermaid participant name.
pub(crate) fn ident(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Text safe inside a Mermaid note or message.
pub(crate) fn clean(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| match c {
            ';' | '#' | ':' | '\n' => ' ',
            c => c,
        })
        .collect();
    text.chars().take(120).collect()
}
