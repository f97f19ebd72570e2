//! Start-up errors in the words of what the user set: a bad value names the
//! `GATEWAY_*` variable when it came from one and the flag otherwise, an
//! enum lists its allowed values, and an unknown flag points to `--help`.
//! Each is one line (contract section 1).

use std::error::Error as _;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory as _, FromArgMatches as _};

use super::Args;

/// Why the command line and environment gave no [`Args`].
#[derive(Debug)]
pub enum ParseError {
    /// `--help` or `--version` was asked for: print it, exit 0.
    Info(clap::Error),
    /// A one-line error for stderr.
    Invalid(String),
}

/// Reads flags and `GATEWAY_*` variables, remembering which values came
/// from a variable so later errors can name it.
pub fn parse(argv: &[String]) -> Result<Args, ParseError> {
    let command = Args::command();
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|err| describe(&command, argv, err))?;
    let mut args = Args::from_arg_matches(&matches).map_err(|err| describe(&command, argv, err))?;
    args.origins = Origins::read(&command, &matches);
    Ok(args)
}

/// The flags whose value came from their variable.
#[derive(Debug, Default, Clone)]
pub struct Origins {
    /// `(flag, variable)`, e.g. `("--max-frame-bytes", "GATEWAY_MAX_FRAME_BYTES")`.
    from_env: Vec<(String, String)>,
}

impl Origins {
    fn read(command: &Command, matches: &ArgMatches) -> Origins {
        let from_env = command
            .get_arguments()
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(ValueSource::EnvVariable)
            })
            .filter_map(|arg| {
                let var = arg.get_env()?.to_string_lossy().into_owned();
                Some((format!("--{}", arg.get_long()?), var))
            })
            .collect();
        Origins { from_env }
    }

    /// `problem` with every flag whose value came from a variable replaced
    /// by that variable's name.
    pub fn reword(&self, problem: &str) -> String {
        self.from_env
            .iter()
            .fold(problem.to_owned(), |text, (flag, var)| {
                replace_flag(&text, flag, var)
            })
    }
}

/// Replaces `flag` as a whole word (not `--listen` inside `--listen-tls`).
fn replace_flag(text: &str, flag: &str, with: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(flag) {
        out.push_str(&rest[..at]);
        let before = out.chars().last();
        let after = rest[at + flag.len()..].chars().next();
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(flag);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + flag.len()..];
    }
    out.push_str(rest);
    out
}

/// One line for a clap error, naming the variable where the value came
/// from one.
fn describe(command: &Command, argv: &[String], err: clap::Error) -> ParseError {
    let context = |kind| err.get(kind).and_then(as_string);
    let line = match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => return ParseError::Info(err),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_default();
            let flag = arg.split_whitespace().next().unwrap_or_default();
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let source = source_of(command, argv, flag);
            let reason = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) => format!("expected {}", valid.join(" or ")),
                _ => err
                    .source()
                    .map_or_else(|| "not accepted".to_owned(), ToString::to_string),
            };
            format!("invalid value '{value}' for {source}: {reason}")
        }
        ErrorKind::UnknownArgument => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_default();
            let hint = match context(ContextKind::SuggestedArg) {
                Some(similar) => format!(" (did you mean '{similar}'?)"),
                None => String::new(),
            };
            format!("unknown argument '{arg}'{hint}; see 'gateway --help'")
        }
        // Clap puts the missing flags on the lines after the first, which
        // the catch-all below would drop.
        ErrorKind::MissingRequiredArgument => {
            let missing = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(args)) => args.join(", "),
                _ => "a required argument".to_owned(),
            };
            format!("missing {missing}; see 'gateway --help'")
        }
        _ => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            format!("{first}; see 'gateway --help'")
        }
    };
    ParseError::Invalid(line)
}

fn as_string(value: &ContextValue) -> Option<String> {
    match value {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        _ => None,
    }
}

/// `flag` itself when the command line holds it, else its variable.
fn source_of(command: &Command, argv: &[String], flag: &str) -> String {
    let on_command_line = argv
        .iter()
        .skip(1)
        .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')));
    let var = command
        .get_arguments()
        .find(|arg| {
            arg.get_long()
                .is_some_and(|long| flag == format!("--{long}"))
        })
        .and_then(|arg| arg.get_env())
        .map(|var| var.to_string_lossy().into_owned());
    match var {
        Some(var) if !on_command_line => var,
        _ => flag.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ParseError, describe, replace_flag};
    use clap::{Arg, Command};

    #[test]
    fn a_missing_argument_is_named() {
        let command = Command::new("gateway")
            .arg(Arg::new("a").long("a").requires("b"))
            .arg(Arg::new("b").long("b").value_name("FILE"));
        let argv = ["gateway", "--a", "x"].map(String::from);
        let err = command
            .clone()
            .try_get_matches_from(&argv)
            .expect_err("--b is missing");
        match describe(&command, &argv, err) {
            ParseError::Invalid(line) => {
                assert_eq!(line, "missing --b <FILE>; see 'gateway --help'");
            }
            ParseError::Info(err) => panic!("not an error line: {err}"),
        }
    }

    #[test]
    fn flags_are_replaced_as_whole_words() {
        assert_eq!(
            replace_flag("--listen 'x' is bad", "--listen", "GATEWAY_LISTEN"),
            "GATEWAY_LISTEN 'x' is bad"
        );
        assert_eq!(
            replace_flag("--listen-tls and --listen", "--listen", "V"),
            "--listen-tls and V"
        );
        assert_eq!(replace_flag("a; --workers", "--workers", "W"), "a; W");
    }
}
