//! Limits on the shape of a Lucene / `query_string` query, checked before
//! any parser sees it.
//!
//! Query parsers recurse once per nested group, so a few kilobytes of `(`
//! would overflow a thread's stack and abort the whole process; a query of
//! thousands of clauses costs far more than its size suggests. The federation
//! checks every query against the server's configured limits before it fans
//! out, and adapters that parse queries themselves check against
//! [`QueryLimits::CEILING`], so no configuration can make them unsafe.

use std::fmt;

/// How large a query may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest query, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of parentheses and prefix operators (`NOT`, `!`, `+`, `-`).
    pub max_depth: usize,
    /// Most terms, phrases and ranges in one query.
    pub max_clauses: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_bytes: 16 * 1024,
            max_depth: 32,
            max_clauses: 1024,
        }
    }
}

impl QueryLimits {
    /// The most any configuration may allow: every parser in tributary handles
    /// queries up to these on a 2 MiB thread stack with room to spare.
    pub const CEILING: QueryLimits = QueryLimits {
        max_bytes: 64 * 1024,
        max_depth: 100,
        max_clauses: 10_000,
    };

    /// These limits, lowered to the ceiling where they exceed it.
    pub fn capped(self) -> QueryLimits {
        QueryLimits {
            max_bytes: self.max_bytes.min(Self::CEILING.max_bytes),
            max_depth: self.max_depth.min(Self::CEILING.max_depth),
            max_clauses: self.max_clauses.min(Self::CEILING.max_clauses),
        }
    }

    /// Checks a query's shape, without parsing it.
    pub fn check(&self, query: &str) -> Result<(), LimitExceeded> {
        if query.len() > self.max_bytes {
            return Err(LimitExceeded::Bytes {
                found: query.len(),
                max: self.max_bytes,
            });
        }
        let shape = Shape::of(query);
        if shape.depth > self.max_depth {
            return Err(LimitExceeded::Depth {
                found: shape.depth,
                max: self.max_depth,
            });
        }
        if shape.clauses > self.max_clauses {
            return Err(LimitExceeded::Clauses {
                found: shape.clauses,
                max: self.max_clauses,
            });
        }
        Ok(())
    }
}

/// Which limit a query went over. The message names the limit and its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    Bytes { found: usize, max: usize },
    Depth { found: usize, max: usize },
    Clauses { found: usize, max: usize },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::Bytes { found, max } => write!(
                f,
                "the query is {found} bytes long; at most {max} are allowed (limit `max_query_bytes`)"
            ),
            LimitExceeded::Depth { found, max } => write!(
                f,
                "the query nests groups and operators {found} levels deep; at most {max} are allowed (limit `max_query_depth`)"
            ),
            LimitExceeded::Clauses { found, max } => write!(
                f,
                "the query has {found} terms; at most {max} are allowed (limit `max_query_clauses`)"
            ),
        }
    }
}

impl std::error::Error for LimitExceeded {}

/// What the limits look at: nesting depth and number of clauses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    depth: usize,
    clauses: usize,
}

impl Shape {
    /// One pass over the query, honouring `\\` escapes and `"phrases"`.
    ///
    /// Parsers recurse once per group and once per prefix operator (`NOT`,
    /// `!`, `+`, `-`), so the depth is the parentheses open plus the prefix
    /// operators in a row before a term. Every unescaped `(` outside a phrase
    /// counts (also inside a `/regex/`), so the depth found is never below
    /// what a parser will recurse through.
    fn of(query: &str) -> Shape {
        let mut shape = Shape::default();
        let mut parens = 0usize;
        // Prefix operators since the last term.
        let mut prefixes = 0usize;
        let mut in_phrase = false;
        let mut word = String::new();
        let mut in_term = false;
        let mut chars = query.chars();
        let deepen = |shape: &mut Shape, depth: usize| shape.depth = shape.depth.max(depth);
        // Ends the current term: `NOT` is an operator, anything else a clause.
        let end_term = |word: &mut String, prefixes: &mut usize, in_term: &mut bool| {
            if *in_term {
                if word == "NOT" {
                    *prefixes += 1;
                } else {
                    *prefixes = 0;
                }
            }
            word.clear();
            *in_term = false;
        };
        while let Some(c) = chars.next() {
            if in_phrase {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => in_phrase = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '\\' => {
                    // An escaped character is part of a term.
                    chars.next();
                    if !in_term {
                        in_term = true;
                        shape.clauses += 1;
                    }
                    word.push('\\');
                }
                '"' => {
                    end_term(&mut word, &mut prefixes, &mut in_term);
                    in_phrase = true;
                    prefixes = 0;
                    shape.clauses += 1;
                }
                '(' => {
                    end_term(&mut word, &mut prefixes, &mut in_term);
                    parens += 1;
                    deepen(&mut shape, parens + prefixes);
                }
                ')' => {
                    end_term(&mut word, &mut prefixes, &mut in_term);
                    parens = parens.saturating_sub(1);
                    prefixes = 0;
                }
                c if c.is_whitespace() => {
                    end_term(&mut word, &mut prefixes, &mut in_term);
                    deepen(&mut shape, parens + prefixes);
                }
                '+' | '-' | '!' if !in_term => {
                    prefixes += 1;
                    deepen(&mut shape, parens + prefixes);
                }
                // `&&` and `||` are operators, not clauses.
                '&' | '|' if !in_term => {}
                c => {
                    if !in_term {
                        in_term = true;
                        shape.clauses += 1;
                    }
                    word.push(c);
                }
            }
        }
        end_term(&mut word, &mut prefixes, &mut in_term);
        deepen(&mut shape, parens + prefixes);
        // `AND`, `OR` and `NOT` were counted as clauses; that only errs on the safe side.
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(q: &str) -> (usize, usize) {
        let s = Shape::of(q);
        (s.depth, s.clauses)
    }

    #[test]
    fn depth_counts_unescaped_parentheses_outside_phrases() {
        assert_eq!(shape("a"), (0, 1));
        assert_eq!(shape("(a OR (b AND c))"), (2, 5));
        assert_eq!(shape("\"(((\" x"), (0, 2));
        assert_eq!(shape("\\(\\(\\( x"), (0, 2));
        assert_eq!(shape("+(+(+(a)))"), (6, 1));
        assert_eq!(shape("NOT NOT NOT a"), (3, 4));
        assert_eq!(shape("a AND NOT b"), (1, 4));
        assert_eq!(shape("-a -b -c"), (1, 3));
        assert_eq!(shape("a:[1 TO 5]"), (0, 3));
        assert_eq!(shape("a AND b"), (0, 3));
    }

    #[test]
    fn nested_attacks_are_refused() {
        let limits = QueryLimits::default();
        for (open, close) in [("(", ")"), ("+(", ")"), ("-(", ")"), ("NOT ", "")] {
            let query = format!("{}a{}", open.repeat(2200), close.repeat(2200));
            let result = limits.check(&query);
            assert!(
                matches!(result, Err(LimitExceeded::Depth { found, max: 32 }) if found >= 2200),
                "{open}: {result:?}"
            );
        }
        let deep_ok = format!("{}a{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(limits.check(&deep_ok), Ok(()));
    }

    #[test]
    fn clause_and_length_limits() {
        let limits = QueryLimits::default();
        let many = "a ".repeat(1025);
        assert!(matches!(
            limits.check(&many),
            Err(LimitExceeded::Clauses { found: 1025, .. })
        ));
        let long = "a".repeat(20_000);
        assert!(matches!(
            limits.check(&long),
            Err(LimitExceeded::Bytes { .. })
        ));
        let message = limits.check(&many).unwrap_err().to_string();
        assert!(message.contains("max_query_clauses"), "{message}");
    }

    #[test]
    fn capped_never_exceeds_the_ceiling() {
        let huge = QueryLimits {
            max_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_clauses: 5,
        };
        let capped = huge.capped();
        assert_eq!(capped.max_depth, QueryLimits::CEILING.max_depth);
        assert_eq!(capped.max_clauses, 5);
    }
}
