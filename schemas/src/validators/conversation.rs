//! `conversation-jsonl`: each line a JSON object with a `conversation_id` (text or
//! number) and a non-empty `turns` array whose items are objects with a text `role`
//! and a text `content`. Statistics: conversations, training pairs (a `user` turn
//! followed by an `assistant` turn), estimated tokens (characters of content / 4),
//! average turns, and the first 3 conversations as samples.

use serde_json::{Value, json};

use super::{Issue, Validator};

#[derive(Debug, Default)]
pub struct Conversations {
    conversations: u64,
    turns: u64,
    pairs: u64,
    chars: u64,
    samples: Vec<Value>,
}

fn issue(field: impl Into<String>, message: impl Into<String>, hint: &str) -> Issue {
    Issue {
        field: field.into(),
        message: message.into(),
        hint: hint.to_owned(),
    }
}

impl Validator for Conversations {
    fn name(&self) -> &'static str {
        "conversation-jsonl"
    }

    fn check(&mut self, record: &Value) -> Vec<Issue> {
        let Some(obj) = record.as_object() else {
            return vec![issue(
                "",
                "the record is not an object",
                "write one {\"conversation_id\", \"turns\"} object per line",
            )];
        };
        let mut issues = Vec::new();
        match obj.get("conversation_id") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Number(_)) => {}
            Some(_) => issues.push(issue(
                "conversation_id",
                "not a non-empty text or a number",
                "give each conversation an id, e.g. \"c-42\"",
            )),
            None => issues.push(issue(
                "conversation_id",
                "missing",
                "add \"conversation_id\" to every line",
            )),
        }
        let turns = match obj.get("turns") {
            Some(Value::Array(t)) if !t.is_empty() => t,
            Some(Value::Array(_)) => {
                issues.push(issue(
                    "turns",
                    "empty",
                    "a conversation has at least one turn",
                ));
                return issues;
            }
            Some(_) => {
                issues.push(issue(
                    "turns",
                    "not an array",
                    "\"turns\": [{\"role\": \"user\", \"content\": \"…\"}, …]",
                ));
                return issues;
            }
            None => {
                issues.push(issue(
                    "turns",
                    "missing",
                    "add \"turns\": [{\"role\", \"content\"}, …]",
                ));
                return issues;
            }
        };
        for (i, turn) in turns.iter().enumerate() {
            for key in ["role", "content"] {
                match turn.get(key) {
                    Some(Value::String(_)) => {}
                    Some(_) => issues.push(issue(
                        format!("turns[{i}].{key}"),
                        "not text",
                        "role and content are strings",
                    )),
                    None => issues.push(issue(
                        format!("turns[{i}].{key}"),
                        "missing",
                        "every turn has a role and a content",
                    )),
                }
            }
        }
        if !issues.is_empty() {
            return issues;
        }
        self.conversations += 1;
        self.turns += turns.len() as u64;
        let roles: Vec<&str> = turns.iter().filter_map(|t| t["role"].as_str()).collect();
        self.pairs += roles
            .windows(2)
            .filter(|w| w[0] == "user" && w[1] == "assistant")
            .count() as u64;
        self.chars += turns
            .iter()
            .filter_map(|t| t["content"].as_str())
            .map(|c| c.chars().count() as u64)
            .sum::<u64>();
        if self.samples.len() < 3 {
            let first: String = turns[0]["content"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            self.samples.push(json!({
                "conversation_id": obj["conversation_id"],
                "turns": turns.len(),
                "first_turn": first,
            }));
        }
        issues
    }

    fn statistics(&self) -> Value {
        let average = if self.conversations == 0 {
            0.0
        } else {
            (self.turns as f64 / self.conversations as f64 * 100.0).round() / 100.0
        };
        json!({
            "conversations": self.conversations,
            "training_pairs": self.pairs,
            "estimated_tokens": self.chars.div_ceil(4),
            "average_turns": average,
            "samples": self.samples,
        })
    }
}
