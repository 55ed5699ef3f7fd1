//! What the gateway writes to an instant-messaging customer, in plain words: the same
//! sentences as the page and the phone (`web::words`), put together for a text message.
//! Pure functions of the centre's values, tested beside them.

use crate::centre::{ContactId, ContactState, ContactStatus};
use crate::web::words;

/// "4827 1930 5561": the number in the groups of four the page and the phone use.
pub fn grouped(id: &ContactId) -> String {
    let s = id.as_str();
    if s.len() == 12 && s.is_ascii() {
        [&s[0..4], &s[4..8], &s[8..12]].join(" ")
    } else {
        s.to_owned()
    }
}

/// "The expected wait is about 4 to 6 minutes." or "No agents are available at the
/// moment."; nothing once the contact has no place in a line.
fn wait(status: &ContactStatus) -> String {
    let w = words::status_wait(status);
    if w.is_empty() || w.starts_with(char::is_uppercase) {
        w
    } else {
        format!("The expected wait is {w}.")
    }
}

/// Where the customer stands now: place (or that an agent has it) and wait.
fn standing(status: &ContactStatus) -> String {
    let mut s = words::position(status);
    let wait = wait(status);
    if !wait.is_empty() && status.agent.is_none() {
        s.push(' ');
        s.push_str(&wait);
    }
    s
}

/// The first answer to a new conversation: the number, the place and wait, the page.
pub fn welcome(status: &ContactStatus, page: &str) -> String {
    format!(
        "Thank you, we have your message. Your contact number is {}. {}\n\
         See or change your place:\n{page}\n\
         Reply here to write to us; send STATUS to see your place again, STOP to leave.",
        grouped(&status.id),
        standing(status)
    )
}

/// The answer to STATUS.
pub fn status(status: &ContactStatus, page: &str) -> String {
    if let ContactState::Ended { .. } = status.state {
        return ended(&status.id);
    }
    format!(
        "Contact {}: {} {}.\nYour page:\n{page}\nSend STATUS again any time.",
        grouped(&status.id),
        standing(status),
        words::agent(status)
    )
}

/// An agent has taken the conversation.
pub fn with_agent(name: &str) -> String {
    format!("{name} is with you now and can read what you wrote.")
}

/// The conversation is over (the agent finished it, or it ended otherwise).
pub fn ended(id: &ContactId) -> String {
    format!(
        "Contact {} has ended. Thank you. Write again to start a new conversation.",
        grouped(id)
    )
}

/// A message the gateway accepted (202) but could not keep: nothing was stored.
pub fn not_taken(why: &str) -> String {
    format!("Sorry, we could not take your last message ({why}). Please send it again.")
}

/// Splits `text` into parts of at most `max` bytes, at a space or line break where one is
/// in the second half of the part, else at a character boundary; parts are trimmed and
/// none is empty.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.len() <= max {
            parts.push(rest.to_owned());
            break;
        }
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(char::is_whitespace)
            && space >= max / 2
        {
            cut = space;
        }
        let (head, tail) = rest.split_at(cut);
        let head = head.trim();
        if !head.is_empty() {
            parts.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::ContactState;

    fn sample() -> ContactStatus {
        words::tests::status(3, 2)
    }

    #[test]
    fn the_welcome_gives_number_place_wait_and_page() {
        let s = sample();
        let w = welcome(&s, "http://gw/c/123?k=t");
        assert!(w.contains(&format!("Your contact number is {}.", grouped(&s.id))));
        assert!(
            w.contains("You are 3rd. 2 callers are ahead of you."),
            "{w}"
        );
        assert!(w.contains("http://gw/c/123?k=t"), "{w}");
        assert!(w.contains("STATUS"));
        let st = status_words(&s);
        assert!(
            st.starts_with(&format!("Contact {}:", grouped(&s.id))),
            "{st}"
        );
        let mut ended_s = s.clone();
        ended_s.state = ContactState::Ended {
            reason: crate::centre::EndReason::Completed,
            at: crate::centre::Timestamp(0),
        };
        assert!(status(&ended_s, "p").contains("has ended"));
    }

    fn status_words(s: &ContactStatus) -> String {
        status(s, "p")
    }

    #[test]
    fn long_text_is_split_at_spaces_within_the_limit() {
        let text = "word ".repeat(500);
        let parts = split(&text, 100);
        assert!(parts.iter().all(|p| p.len() <= 100 && !p.is_empty()));
        assert_eq!(parts.join(" "), text.trim());
        // No space: cut at a character boundary, never inside one.
        let parts = split(&"é".repeat(120), 101);
        assert!(parts.iter().all(|p| p.len() <= 101));
        assert_eq!(parts.concat(), "é".repeat(120));
        assert_eq!(split("  short  ", 100), vec!["short".to_owned()]);
        assert!(split("   ", 100).is_empty());
    }

    #[test]
    fn numbers_are_grouped_in_fours() {
        let id: ContactId = sample().id;
        let g = grouped(&id);
        assert_eq!(g.len(), 14);
        assert_eq!(g.replace(' ', ""), id.as_str());
    }
}
