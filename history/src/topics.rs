//! Which topics have history (`--history-topics`): comma-separated topic
//! names, where a name ending in `*` is a prefix (`*` alone is every
//! topic).

/// The topics with history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPatterns {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// A pattern list that is empty, or holds an empty pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("give one or more topics or prefixes (ending in *), separated by commas")]
pub struct InvalidPatterns;

impl TopicPatterns {
    /// Parses `a,b/*,c`.
    pub fn parse(text: &str) -> Result<TopicPatterns, InvalidPatterns> {
        let mut patterns = TopicPatterns {
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for pattern in text.split(',').map(str::trim) {
            if pattern.is_empty() {
                return Err(InvalidPatterns);
            }
            match pattern.strip_suffix('*') {
                Some(prefix) => patterns.prefixes.push(prefix.to_owned()),
                None => patterns.exact.push(pattern.to_owned()),
            }
        }
        Ok(patterns)
    }

    /// Whether `topic` has history.
    pub fn contains(&self, topic: &str) -> bool {
        self.exact.iter().any(|t| t == topic) || self.prefixes.iter().any(|p| topic.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes() {
        let p = TopicPatterns::parse("orders, chat/*").expect("parse");
        assert!(p.contains("orders") && p.contains("chat/") && p.contains("chat/room"));
        assert!(!p.contains("order") && !p.contains("orders/x") && !p.contains("cha"));
        assert!(
            TopicPatterns::parse("*")
                .expect("parse")
                .contains("anything")
        );
        for bad in ["", "a,", ",a", "a,,b", " "] {
            assert_eq!(TopicPatterns::parse(bad), Err(InvalidPatterns), "{bad:?}");
        }
    }
}
