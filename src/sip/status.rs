//! SIP status codes as a type (RFC 3261 §21 and the extensions the gateway speaks): one
//! mapping from a code to its reason phrase, one from the wire (`from_wire`), and what a
//! code means for a call, so the same question is never answered by two `match`es.
//! Adopted where issue 9 decides things (`calls::flow`, the UA's 422 and NOTIFY 481) and
//! for every answer the call layer gives an incoming call (`endpoint::PendingCall`); the
//! UA's own protocol answers inside `ua/` still write bare `u16`s.

/// A SIP final or provisional status, 100..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    pub const TRYING: StatusCode = StatusCode(100);
    pub const RINGING: StatusCode = StatusCode(180);
    pub const OK: StatusCode = StatusCode(200);
    pub const ACCEPTED: StatusCode = StatusCode(202);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    pub const BAD_EXTENSION: StatusCode = StatusCode(420);
    pub const SESSION_INTERVAL_TOO_SMALL: StatusCode = StatusCode(422);
    pub const TEMPORARILY_UNAVAILABLE: StatusCode = StatusCode(480);
    pub const DOES_NOT_EXIST: StatusCode = StatusCode(481);
    pub const BUSY_HERE: StatusCode = StatusCode(486);
    pub const REQUEST_TERMINATED: StatusCode = StatusCode(487);
    pub const NOT_ACCEPTABLE_HERE: StatusCode = StatusCode(488);
    pub const SERVER_INTERNAL_ERROR: StatusCode = StatusCode(500);
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    pub const BUSY_EVERYWHERE: StatusCode = StatusCode(600);

    /// A status read from the wire; `None` outside 100..=699.
    pub fn from_wire(code: u16) -> Option<StatusCode> {
        (100..=699).contains(&code).then_some(StatusCode(code))
    }

    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase we write (RFC 3261 §21, RFC 3515, RFC 4028, RFC 6665).
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            183 => "Session Progress",
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            420 => "Bad Extension",
            422 => "Session Interval Too Small",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            600 => "Busy Everywhere",
            603 => "Decline",
            c if c < 200 => "Progress",
            c if c < 300 => "Success",
            c if c < 400 => "Redirection",
            c if c < 500 => "Client Error",
            c if c < 600 => "Server Error",
            _ => "Global Failure",
        }
    }

    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }

    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// Ringing or session progress: the far end was reached and is alerting.
    pub fn is_ringing(self) -> bool {
        (180..200).contains(&self.0)
    }

    /// The dialog no longer exists at the far end (RFC 5057 §5.1): nothing answered an
    /// in-dialog request (408, our Timer F) or it said "no such call" (481).
    pub fn dialog_gone(self) -> bool {
        matches!(self, Self::REQUEST_TIMEOUT | Self::DOES_NOT_EXIST)
    }

    /// Answered to a REFER: the caller's equipment does not do transfers at all (method
    /// not allowed, extension not supported, not implemented).
    pub fn refuses_refer(self) -> bool {
        matches!(
            self,
            Self::METHOD_NOT_ALLOWED | Self::BAD_EXTENSION | Self::NOT_IMPLEMENTED
        )
    }

    /// A transfer target that did not answer (or was given up on).
    pub fn no_answer(self) -> bool {
        matches!(
            self,
            Self::REQUEST_TIMEOUT | Self::TEMPORARILY_UNAVAILABLE | Self::REQUEST_TERMINATED
        )
    }

    /// A transfer target that was busy.
    pub fn busy(self) -> bool {
        matches!(self, Self::BUSY_HERE | Self::BUSY_EVERYWHERE)
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_wire_and_back() {
        assert_eq!(StatusCode::from_wire(99), None);
        assert_eq!(StatusCode::from_wire(700), None);
        let c = StatusCode::from_wire(422).unwrap();
        assert_eq!(c, StatusCode::SESSION_INTERVAL_TOO_SMALL);
        assert_eq!(c.to_string(), "422 Session Interval Too Small");
        assert_eq!(StatusCode::from_wire(499).unwrap().reason(), "Client Error");
    }

    #[test]
    fn what_a_code_means_for_a_call() {
        let s = |c| StatusCode::from_wire(c).unwrap();
        assert!(s(408).dialog_gone() && s(481).dialog_gone() && !s(486).dialog_gone());
        assert!(s(405).refuses_refer() && s(420).refuses_refer() && s(501).refuses_refer());
        assert!(!s(603).refuses_refer());
        assert!(s(180).is_ringing() && s(183).is_ringing() && !s(100).is_ringing());
        assert!(s(487).no_answer() && s(600).busy() && !s(503).busy());
        assert!(s(202).is_success() && s(100).is_provisional());
    }
}
