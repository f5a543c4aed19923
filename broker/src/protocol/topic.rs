//! Topic patterns (spec §1): how routes and presence settings name topics.

/// A topic pattern: an exact topic, or a prefix ending in one trailing `*` (spec §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicPattern {
    Exact(String),
    Prefix(String),
}

impl TopicPattern {
    /// Parses `"room:*"` or `"lobby"`; a `*` anywhere but at the end is an error.
    pub fn parse(p: &str) -> Result<TopicPattern, String> {
        match p.find('*') {
            None => Ok(TopicPattern::Exact(p.to_owned())),
            Some(i) if i == p.len() - 1 => Ok(TopicPattern::Prefix(p[..i].to_owned())),
            Some(_) => Err(format!("invalid topic pattern {p:?}: '*' is only allowed at the end")),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }
}

