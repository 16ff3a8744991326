//! A self-contained HTML view of a checked history, after Porcupine's visualisation: one
//! row per client with each operation as a bar over time, each partition's verdict, the
//! linearization found (numbered on the bars) or the longest linearizable prefix and the
//! operation that cannot be placed (highlighted).
//!
//! The page holds its data as JSON and draws itself with a short script, with no network
//! access: open the file in any browser.

use crate::history::{History, OpId};
use crate::report::{PartitionVerdict, Report};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Renders `history` and the `report` of its check as one HTML page.
pub fn render<I: Debug, O: Debug>(history: &History<I, O>, report: &Report) -> String {
    let operations: Vec<Value> = history
        .operations()
        .iter()
        .map(|op| {
            json!({
                "id": op.id.0,
                "client": op.client,
                "call": op.call_ns,
                "ret": op.return_ns,
                "input": format!("{:?}", op.input),
                "output": op.output.as_ref().map(|o| format!("{o:?}")),
            })
        })
        .collect();
    let partitions: Vec<Value> = report.partitions.iter().map(partition_json).collect();
    let data = json!({
        "result": report.result.to_string().lines().next().unwrap_or_default(),
        "operations": operations,
        "partitions": partitions,
    });
    // `</` inside a script element would end it; JSON allows the escaped form.
    let data = data.to_string().replace("</", "<\\/");
    PAGE.replace("/*DATA*/null", &data)
}

fn partition_json(part: &crate::report::PartitionReport) -> Value {
    let ids = |ids: &[OpId]| ids.iter().map(|id| id.0).collect::<Vec<_>>();
    let mut fields: BTreeMap<&str, Value> = BTreeMap::new();
    fields.insert("label", json!(part.label));
    fields.insert("steps", json!(part.steps));
    fields.insert("memo_entries", json!(part.memo_entries));
    let verdict = match &part.verdict {
        PartitionVerdict::Linearizable { witness } => {
            fields.insert("order", json!(ids(witness)));
            "linearizable".to_string()
        }
        PartitionVerdict::Illegal { explanation } => {
            fields.insert("order", json!(ids(&explanation.linearized)));
            fields.insert("blocking", json!(explanation.blocking.0));
            fields.insert("candidates", json!(ids(&explanation.candidates)));
            fields.insert("state", json!(explanation.state_after));
            "illegal".to_string()
        }
        PartitionVerdict::Unknown { limit } => format!("unknown: {limit}"),
        PartitionVerdict::Stopped => "stopped: another partition decided".to_string(),
    };
    fields.insert("verdict", json!(verdict));
    json!(fields)
}

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>linearizability</title>
<style>
body { font: 13px sans-serif; margin: 1em; }
.row { position: relative; height: 26px; border-bottom: 1px solid #eee; }
.client { position: absolute; left: 0; width: 80px; top: 5px; color: #555; }
.op { position: absolute; height: 18px; top: 3px; background: #9cf; border: 1px solid #36c;
      overflow: hidden; white-space: nowrap; font-size: 11px; box-sizing: border-box; }
.op.open { background: repeating-linear-gradient(45deg,#ddd,#ddd 4px,#fff 4px,#fff 8px); }
.op.linearized { background: #9e9; border-color: #383; }
.op.blocking { background: #f88; border: 2px solid #c00; }
.op.candidate { border: 2px dashed #c60; }
.part { margin: .3em 0; }
.illegal { color: #c00; font-weight: bold; }
</style></head><body>
<h1 id="result"></h1>
<div id="partitions"></div>
<div id="timeline"></div>
<script>
const data = /*DATA*/null;
const ops = new Map(data.operations.map(op => [op.id, op]));
const mark = new Map();
const rank = new Map();
for (const part of data.partitions) {
  (part.order || []).forEach((id, i) => { mark.set(id, 'linearized'); rank.set(id, i + 1); });
  (part.candidates || []).forEach(id => mark.set(id, 'candidate'));
  if (part.blocking !== undefined) mark.set(part.blocking, 'blocking');
}
document.getElementById('result').textContent = data.result;
const parts = document.getElementById('partitions');
for (const part of data.partitions) {
  const div = document.createElement('div');
  div.className = 'part' + (part.verdict === 'illegal' ? ' illegal' : '');
  let text = `partition ${part.label}: ${part.verdict} (${part.steps} steps, ${part.memo_entries} memo entries)`;
  if (part.blocking !== undefined) {
    const op = ops.get(part.blocking);
    text += `; longest linearizable prefix: ${part.order.length} operations, state ${part.state};` +
      ` cannot be placed: #${op.id} ${op.input} -> ${op.output}`;
  }
  div.textContent = text;
  parts.appendChild(div);
}
const times = data.operations.flatMap(op => [op.call, op.ret === null ? op.call : op.ret]);
const start = Math.min(...times), end = Math.max(...times) + 1;
const pct = t => 8 + 90 * (t - start) / (end - start);
const clients = [...new Set(data.operations.map(op => op.client))].sort((a, b) => a - b);
const timeline = document.getElementById('timeline');
for (const client of clients) {
  const row = document.createElement('div');
  row.className = 'row';
  const name = document.createElement('span');
  name.className = 'client';
  name.textContent = `client ${client}`;
  row.appendChild(name);
  for (const op of data.operations.filter(op => op.client === client)) {
    const bar = document.createElement('div');
    bar.className = 'op' + (op.ret === null ? ' open' : '') + (mark.has(op.id) ? ' ' + mark.get(op.id) : '');
    bar.dataset.op = op.id;
    bar.style.left = pct(op.call) + '%';
    bar.style.width = Math.max(0.3, (op.ret === null ? 98 : pct(op.ret)) - pct(op.call)) + '%';
    const order = rank.has(op.id) ? `[${rank.get(op.id)}] ` : '';
    bar.textContent = `${order}${op.input} -> ${op.output === null ? '?' : op.output}`;
    bar.title = `#${op.id} ${op.input} -> ${op.output} [${op.call}..${op.ret}]`;
    row.appendChild(bar);
  }
  timeline.appendChild(row);
}
document.body.dataset.rendered = data.operations.length;
</script></body></html>
"#;
