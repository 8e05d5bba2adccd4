//! The fields of the raw event contract (EVENTS.md): which fields exist, which
//! event types declare which of them, and how a decoded value looks before
//! validation. Decoders (JSON Lines, CSV, Parquet) produce [`RawRecord`]s made of
//! [`Value`]s; the validator is the only consumer. Nothing here knows formats.

use std::borrow::Cow;

/// Every field any event type declares, in the order of the `events` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Field {
    EventId,
    EventType,
    CustomerId,
    OccurredAt,
    SubscriptionId,
    Plan,
    Mrr,
    Currency,
    Seats,
    Amount,
    PaymentId,
    Feature,
    UserId,
    Quantity,
    TicketId,
    Priority,
    Score,
    CampaignId,
    Name,
    Segment,
    Country,
    Industry,
    Owner,
    Reason,
    Comment,
}

pub const FIELD_COUNT: usize = 25;

impl Field {
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::EventId,
        Field::EventType,
        Field::CustomerId,
        Field::OccurredAt,
        Field::SubscriptionId,
        Field::Plan,
        Field::Mrr,
        Field::Currency,
        Field::Seats,
        Field::Amount,
        Field::PaymentId,
        Field::Feature,
        Field::UserId,
        Field::Quantity,
        Field::TicketId,
        Field::Priority,
        Field::Score,
        Field::CampaignId,
        Field::Name,
        Field::Segment,
        Field::Country,
        Field::Industry,
        Field::Owner,
        Field::Reason,
        Field::Comment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EventType => "event_type",
            Field::CustomerId => "customer_id",
            Field::OccurredAt => "occurred_at",
            Field::SubscriptionId => "subscription_id",
            Field::Plan => "plan",
            Field::Mrr => "mrr",
            Field::Currency => "currency",
            Field::Seats => "seats",
            Field::Amount => "amount",
            Field::PaymentId => "payment_id",
            Field::Feature => "feature",
            Field::UserId => "user_id",
            Field::Quantity => "quantity",
            Field::TicketId => "ticket_id",
            Field::Priority => "priority",
            Field::Score => "score",
            Field::CampaignId => "campaign_id",
            Field::Name => "name",
            Field::Segment => "segment",
            Field::Country => "country",
            Field::Industry => "industry",
            Field::Owner => "owner",
            Field::Reason => "reason",
            Field::Comment => "comment",
        }
    }

    /// The field a raw key names (exact, case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "event_id" => Field::EventId,
            "event_type" => Field::EventType,
            "customer_id" => Field::CustomerId,
            "occurred_at" => Field::OccurredAt,
            "subscription_id" => Field::SubscriptionId,
            "plan" => Field::Plan,
            "mrr" => Field::Mrr,
            "currency" => Field::Currency,
            "seats" => Field::Seats,
            "amount" => Field::Amount,
            "payment_id" => Field::PaymentId,
            "feature" => Field::Feature,
            "user_id" => Field::UserId,
            "quantity" => Field::Quantity,
            "ticket_id" => Field::TicketId,
            "priority" => Field::Priority,
            "score" => Field::Score,
            "campaign_id" => Field::CampaignId,
            "name" => Field::Name,
            "segment" => Field::Segment,
            "country" => Field::Country,
            "industry" => Field::Industry,
            "owner" => Field::Owner,
            "reason" => Field::Reason,
            "comment" => Field::Comment,
            _ => return None,
        })
    }

    /// How a field's value is read.
    pub fn kind(self) -> Kind {
        match self {
            Field::OccurredAt => Kind::Timestamp,
            Field::Mrr | Field::Amount => Kind::Money,
            Field::Seats => Kind::Integer,
            Field::Score => Kind::Score,
            Field::Quantity => Kind::Float,
            _ => Kind::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Timestamp,
    Money,
    Integer,
    Score,
    Float,
}

/// The event types of EVENTS.md, grouped by the fields they declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFamily {
    Customer,
    SubscriptionSet,
    SubscriptionStop,
    Payment,
    Usage,
    Support,
    SurveyNps,
    SurveyCsat,
    Email,
}

impl TypeFamily {
    /// The family of an `event_type`, or `None` for an unknown type.
    pub fn of(event_type: &str) -> Option<TypeFamily> {
        Some(match event_type {
            "customer.created" | "customer.updated" => TypeFamily::Customer,
            "subscription.started" | "subscription.changed" | "subscription.resumed" => {
                TypeFamily::SubscriptionSet
            }
            "subscription.paused" | "subscription.cancelled" => TypeFamily::SubscriptionStop,
            "payment.succeeded" | "payment.failed" | "payment.refunded" => TypeFamily::Payment,
            "support.ticket_opened" | "support.ticket_resolved" => TypeFamily::Support,
            "survey.nps" => TypeFamily::SurveyNps,
            "survey.csat" => TypeFamily::SurveyCsat,
            "email.sent" | "email.opened" | "email.clicked" => TypeFamily::Email,
            t if t.starts_with("usage.") => TypeFamily::Usage,
            _ => return None,
        })
    }

    pub fn required(self) -> &'static [Field] {
        match self {
            TypeFamily::SubscriptionSet => &[Field::SubscriptionId, Field::Mrr],
            TypeFamily::SubscriptionStop => &[Field::SubscriptionId],
            TypeFamily::Payment => &[Field::Amount],
            TypeFamily::Support => &[Field::TicketId],
            TypeFamily::SurveyNps | TypeFamily::SurveyCsat => &[Field::Score],
            TypeFamily::Customer | TypeFamily::Usage | TypeFamily::Email => &[],
        }
    }

    pub fn optional(self) -> &'static [Field] {
        match self {
            TypeFamily::Customer => &[
                Field::Name,
                Field::Segment,
                Field::Country,
                Field::Industry,
                Field::Owner,
            ],
            TypeFamily::SubscriptionSet => &[Field::Plan, Field::Currency, Field::Seats],
            TypeFamily::SubscriptionStop => &[Field::Plan, Field::Reason],
            TypeFamily::Payment => &[Field::PaymentId, Field::Currency],
            TypeFamily::Usage => &[Field::Feature, Field::UserId, Field::Quantity],
            TypeFamily::Support => &[Field::Priority],
            TypeFamily::SurveyNps | TypeFamily::SurveyCsat => &[Field::Comment],
            TypeFamily::Email => &[Field::CampaignId],
        }
    }

    /// Every field the type declares, required first.
    pub fn declared(self) -> impl Iterator<Item = Field> {
        self.required().iter().chain(self.optional()).copied()
    }

    pub fn declares(self, field: Field) -> bool {
        self.declared().any(|f| f == field)
    }
}

/// A decoded value, before validation. Empty strings and nulls are `Missing`
/// (EVENTS.md rule 4).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Missing,
    /// A string (JSON string, CSV cell, Parquet string column).
    Text(Cow<'a, str>),
    /// A number as its source text (JSON number token, Parquet numeric column).
    Number(Cow<'a, str>),
    Bool(bool),
    /// A JSON object or array, or a nested Parquet value.
    Compound,
    /// A typed timestamp (Parquet), microseconds since the epoch, UTC.
    Instant(i64),
}

impl Value<'_> {
    pub fn text(s: impl Into<String>) -> Value<'static> {
        let s = s.into();
        if s.is_empty() {
            Value::Missing
        } else {
            Value::Text(Cow::Owned(s))
        }
    }
}

/// One decoded row: a value per field (unknown keys are dropped by decoders).
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    pub values: [Value<'a>; FIELD_COUNT],
}

impl Default for RawRecord<'_> {
    fn default() -> Self {
        RawRecord {
            values: std::array::from_fn(|_| Value::Missing),
        }
    }
}

impl<'a> RawRecord<'a> {
    pub fn get(&self, field: Field) -> &Value<'a> {
        &self.values[field as usize]
    }

    pub fn set(&mut self, field: Field, value: Value<'a>) {
        self.values[field as usize] = value;
    }
}
