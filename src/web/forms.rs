//! What a caller typed, checked before it goes to the centre: length bounds, shapes, and
//! the turning of a form (or API body) into one `Command`. Every refusal names the field
//! so the page can put the message next to it and keep what was typed.

use serde::Deserialize;

use crate::centre::{ActionKind, Command, CommandId, QueueId, Window};

use super::zone::Zone;

// The centre's limits (one set for every layer).
pub use crate::centre::limits::{
    COMMAND_ID_MAX_LEN as MAX_COMMAND_ID, EMAIL_MAX_CHARS as MAX_EMAIL,
    MESSAGE_MAX_CHARS as MAX_MESSAGE, NAME_MAX_CHARS as MAX_NAME, NOTE_MAX_CHARS as MAX_NOTE,
    PHONE_MAX_CHARS as MAX_PHONE, QUEUE_ID_MAX_LEN as MAX_QUEUE, SUBJECT_MAX_CHARS as MAX_SUBJECT,
};
/// The entry form's number field (digits plus spaces or hyphens).
pub const MAX_LOOKUP: usize = 32;

/// A field and what is wrong with it, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Every field any control's form may carry (all optional: each action uses some).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionForm {
    pub csrf: Option<String>,
    pub command_id: Option<String>,
    pub version: Option<String>,
    pub action: Option<String>,
    pub to: Option<String>,
    pub number: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
    pub reply_to: Option<String>,
    pub name: Option<String>,
    /// The note for the agent (empty: remove it).
    pub note: Option<String>,
    /// The IANA zone the window's times were typed in (set by the page; see `zone`).
    pub tz: Option<String>,
}

pub fn action_kind(s: &str) -> Option<ActionKind> {
    [
        ActionKind::MoveQueue,
        ActionKind::Callback,
        ActionKind::Email,
        ActionKind::WebForm,
        ActionKind::CancelCallback,
        ActionKind::ChangeCallback,
        ActionKind::Note,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

pub fn command_id(s: &str) -> Result<CommandId, FieldError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_COMMAND_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(CommandId(s.to_owned()))
    } else {
        Err(FieldError::new(
            "command_id",
            "The form was damaged; reload the page and try again.",
        ))
    }
}

/// A fresh idempotency key for a form: 22 characters of `[A-Za-z0-9_-]`, 132 random bits.
///
/// One random byte per character (its low six bits pick from 64 symbols, all of which
/// [`command_id`] accepts), drawn in one call: a status page needs up to six of these per
/// request, and sampling alphanumerics one `char` at a time was a visible share of it.
pub fn fresh_command_id() -> String {
    use rand::RngCore;
    const SYMBOLS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 22];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(SYMBOLS[usize::from(b & 63)]))
        .collect()
}

fn text(field: &str, value: &str, max: usize, what: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, format!("Please enter {what}.")));
    }
    let len = value.chars().count();
    if len > max {
        return Err(FieldError::new(
            field,
            format!(
                "{} is too long: at most {max} characters, this has {len}.",
                capital(what)
            ),
        ));
    }
    Ok(())
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn phone(field: &str, value: &str) -> Result<(), FieldError> {
    text(field, value, MAX_PHONE, "the number to call")?;
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !allowed || digits < 3 {
        return Err(FieldError::new(
            field,
            "Enter a phone number: digits, optionally with +, spaces, hyphens or brackets.",
        ));
    }
    Ok(())
}

fn email(field: &str, value: &str) -> Result<(), FieldError> {
    text(field, value, MAX_EMAIL, "your email address")?;
    let ok = match value.trim().split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.trim().contains(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "Enter an email address like name@example.com.",
        ))
    }
}

/// Bounds and shapes of a command's fields (the centre checks what depends on state).
pub fn validate(command: &Command) -> Result<(), FieldError> {
    match command {
        Command::MoveQueue { to } => {
            if to.0.is_empty() || to.0.len() > MAX_QUEUE {
                return Err(FieldError::new("to", "Choose a queue from the list."));
            }
            Ok(())
        }
        Command::Callback { number, window } | Command::ChangeCallback { number, window } => {
            // Empty means "my own number" / "keep the number"; the centre decides.
            if !number.trim().is_empty() {
                phone("number", number)?;
            }
            if let Some(w) = window
                && w.not_after <= w.not_before
            {
                return Err(FieldError::new(
                    "not_after",
                    "The end of the time window must be after its start.",
                ));
            }
            Ok(())
        }
        Command::Email {
            subject,
            message,
            reply_to,
        } => {
            text("subject", subject, MAX_SUBJECT, "a subject")?;
            text("message", message, MAX_MESSAGE, "a message")?;
            email("reply_to", reply_to)
        }
        Command::WebForm {
            name,
            subject,
            message,
            reply_to,
        } => {
            text("name", name, MAX_NAME, "your name")?;
            text("subject", subject, MAX_SUBJECT, "a subject")?;
            text("message", message, MAX_MESSAGE, "a message")?;
            email("reply_to", reply_to)
        }
        Command::CancelCallback => Ok(()),
        Command::Note { text } => {
            let len = text.trim().chars().count();
            if len > MAX_NOTE {
                return Err(FieldError::new(
                    "note",
                    format!(
                        "Your note is too long: at most {MAX_NOTE} characters, this has {len}."
                    ),
                ));
            }
            Ok(())
        }
    }
}

fn window(form: &ActionForm, zone: &Zone) -> Result<Option<Window>, FieldError> {
    let nb = form.not_before.as_deref().unwrap_or("").trim();
    let na = form.not_after.as_deref().unwrap_or("").trim();
    let parse = |field: &str, v: &str| {
        zone.parse_datetime_local(v)
            .ok_or_else(|| FieldError::new(field, "Enter a date and time like 2026-11-24T10:00."))
    };
    match (nb.is_empty(), na.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Err(FieldError::new(
            "not_after",
            "Give both times of the window, or neither.",
        )),
        (true, false) => Err(FieldError::new(
            "not_before",
            "Give both times of the window, or neither.",
        )),
        (false, false) => Ok(Some(Window {
            not_before: parse("not_before", nb)?,
            not_after: parse("not_after", na)?,
        })),
    }
}

fn field(form: &Option<String>) -> String {
    form.clone().unwrap_or_default()
}

/// The command a submitted form asks for, validated.
/// `zone`: the one the window's times were typed in.
pub fn command_from_form(form: &ActionForm, zone: &Zone) -> Result<Command, FieldError> {
    let kind = form
        .action
        .as_deref()
        .and_then(action_kind)
        .ok_or_else(|| FieldError::new("action", "Unknown action; reload the page."))?;
    let command = match kind {
        ActionKind::MoveQueue => Command::MoveQueue {
            to: QueueId(field(&form.to)),
        },
        ActionKind::Callback => Command::Callback {
            number: field(&form.number).trim().to_owned(),
            window: window(form, zone)?,
        },
        ActionKind::ChangeCallback => Command::ChangeCallback {
            number: field(&form.number).trim().to_owned(),
            window: window(form, zone)?,
        },
        ActionKind::Email => Command::Email {
            subject: field(&form.subject),
            message: field(&form.message),
            reply_to: field(&form.reply_to).trim().to_owned(),
        },
        ActionKind::WebForm => Command::WebForm {
            name: field(&form.name),
            subject: field(&form.subject),
            message: field(&form.message),
            reply_to: field(&form.reply_to).trim().to_owned(),
        },
        ActionKind::CancelCallback => Command::CancelCallback,
        ActionKind::Note => Command::Note {
            text: field(&form.note),
        },
    };
    validate(&command)?;
    Ok(command)
}

/// The shown version, if the form carried a sane one.
pub fn version(form: &ActionForm) -> Option<u64> {
    form.version.as_deref().and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    static UTC: std::sync::LazyLock<Zone> = std::sync::LazyLock::new(Zone::utc);

    fn form(action: &str) -> ActionForm {
        ActionForm {
            action: Some(action.into()),
            ..ActionForm::default()
        }
    }

    #[test]
    fn a_callback_form_becomes_a_command() {
        let mut f = form("callback");
        f.number = Some(" +44 (0)20 7946-0000 ".into());
        assert_eq!(
            command_from_form(&f, &UTC),
            Ok(Command::Callback {
                number: "+44 (0)20 7946-0000".into(),
                window: None
            })
        );
        f.not_before = Some("2026-11-24T10:00".into());
        assert_eq!(command_from_form(&f, &UTC).unwrap_err().field, "not_after");
        f.not_after = Some("2026-11-24T09:00".into());
        assert_eq!(command_from_form(&f, &UTC).unwrap_err().field, "not_after");
        f.not_after = Some("tomorrow".into());
        assert_eq!(command_from_form(&f, &UTC).unwrap_err().field, "not_after");
        f.not_after = Some("2026-11-24T12:00".into());
        assert!(matches!(
            command_from_form(&f, &UTC),
            Ok(Command::Callback {
                window: Some(_),
                ..
            })
        ));
        f.number = Some("call me".into());
        assert_eq!(command_from_form(&f, &UTC).unwrap_err().field, "number");
    }

    #[test]
    fn lengths_are_bounded_with_clear_messages() {
        let mut f = form("email");
        f.subject = Some("s".repeat(MAX_SUBJECT + 1));
        f.message = Some("hello".into());
        f.reply_to = Some("a@example.com".into());
        let e = command_from_form(&f, &UTC).unwrap_err();
        assert_eq!(e.field, "subject");
        assert_eq!(
            e.message,
            "A subject is too long: at most 200 characters, this has 201."
        );
        f.subject = Some("Invoice".into());
        f.reply_to = Some("not an address".into());
        assert_eq!(command_from_form(&f, &UTC).unwrap_err().field, "reply_to");
        f.reply_to = Some("a@example.com".into());
        assert!(command_from_form(&f, &UTC).is_ok());
        let mut w = form("web_form");
        w.subject = Some("x".into());
        w.message = Some("x".into());
        w.reply_to = Some("a@example.com".into());
        assert_eq!(command_from_form(&w, &UTC).unwrap_err().field, "name");
    }

    #[test]
    fn command_ids_and_actions_are_checked() {
        assert!(command_id("abc_DEF-123").is_ok());
        assert!(command_id("").is_err());
        assert!(command_id("a b").is_err());
        assert!(command_id(&"a".repeat(65)).is_err());
        let fresh = fresh_command_id();
        assert_eq!(fresh.len(), 22);
        assert!(command_id(&fresh).is_ok(), "{fresh}");
        assert_ne!(fresh, fresh_command_id());
        assert_eq!(
            command_from_form(&form("fax"), &UTC).unwrap_err().field,
            "action"
        );
        assert_eq!(
            command_from_form(&form("cancel_callback"), &UTC),
            Ok(Command::CancelCallback)
        );
    }
}
