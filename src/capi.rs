//! The Conversions API's vocabulary for business messaging (capi-spec.md §2): channels, the
//! `user_data` fields and how each is treated, the event names Meta accepts, the event_time
//! window, and the id, hash and currency checks.
//!
//! A leaf: it imports nothing of msgcapi. `mapping` checks a mapping against it, `event` checks
//! rows against it; the emulator deliberately does not use it (it checks independently).

/// Event names Meta accepts for business messaging (capi-spec.md §2).
pub const EVENT_NAMES: &[&str] = &[
    "Purchase",
    "LeadSubmitted",
    "InitiateCheckout",
    "AddToCart",
    "ViewContent",
    "OrderCreated",
    "OrderShipped",
    "OrderDelivered",
    "OrderCanceled",
    "OrderReturned",
    "CartAbandoned",
    "QualifiedLead",
    "RatingProvided",
    "ReviewProvided",
];

/// The `'static` spelling of a standard event name, if `name` is one.
pub fn standard_event_name(name: &str) -> Option<&'static str> {
    EVENT_NAMES.iter().find(|k| **k == name).copied()
}

/// Meta refuses events older than this when they are sent.
pub const MAX_AGE_SECS: i64 = 7 * 24 * 3600;
/// Events further than this in the future are invalid (policy, capi-spec.md §2).
pub const MAX_FUTURE_SECS: i64 = 60;
/// The earliest and latest event times that are times at all (0001-01-01, 9999-12-31 23:59:59
/// UTC); outside, a value is a wrapped or garbled number.
pub const MIN_TIME: i64 = -62_135_596_800;
pub const MAX_TIME: i64 = 253_402_300_799;

/// The ledger keeps a record this long past Meta's window (a day of slack for late reruns).
pub const LEDGER_WINDOW_SECS: i64 = MAX_AGE_SECS + 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Whatsapp,
    Messenger,
    Instagram,
}

impl Channel {
    pub const NAMES: [&'static str; 3] = ["whatsapp", "messenger", "instagram"];

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "whatsapp" => Some(Channel::Whatsapp),
            "messenger" => Some(Channel::Messenger),
            "instagram" => Some(Channel::Instagram),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
        }
    }

    /// The `user_data` ids this channel requires (all unhashed).
    /// The business account whose dataset the channel's events go to (`dataset_id: auto`).
    pub fn account_field(self) -> UserField {
        self.required_ids()[0]
    }

    pub fn required_ids(self) -> [UserField; 2] {
        match self {
            Channel::Whatsapp => [UserField::WabaId, UserField::CtwaClid],
            Channel::Messenger => [UserField::PageId, UserField::Psid],
            Channel::Instagram => [UserField::IgAccountId, UserField::IgSid],
        }
    }
}

/// How a contact field is normalized before hashing (Meta's customer-information rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiKind {
    Email,
    Phone,
    Name,
    City,
    State,
    Zip,
    Country,
    DateOfBirth,
    Gender,
    ExternalId,
}

/// The `user_data` fields a mapping may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserField {
    WabaId,
    CtwaClid,
    PageId,
    Psid,
    IgAccountId,
    IgSid,
    Em,
    Ph,
    Fn,
    Ln,
    Ct,
    St,
    Zp,
    Country,
    Db,
    Ge,
    ExternalId,
}

impl UserField {
    pub const ALL: [UserField; 17] = [
        UserField::WabaId,
        UserField::CtwaClid,
        UserField::PageId,
        UserField::Psid,
        UserField::IgAccountId,
        UserField::IgSid,
        UserField::Em,
        UserField::Ph,
        UserField::Fn,
        UserField::Ln,
        UserField::Ct,
        UserField::St,
        UserField::Zp,
        UserField::Country,
        UserField::Db,
        UserField::Ge,
        UserField::ExternalId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UserField::WabaId => "whatsapp_business_account_id",
            UserField::CtwaClid => "ctwa_clid",
            UserField::PageId => "page_id",
            UserField::Psid => "page_scoped_user_id",
            UserField::IgAccountId => "instagram_business_account_id",
            UserField::IgSid => "ig_sid",
            UserField::Em => "em",
            UserField::Ph => "ph",
            UserField::Fn => "fn",
            UserField::Ln => "ln",
            UserField::Ct => "ct",
            UserField::St => "st",
            UserField::Zp => "zp",
            UserField::Country => "country",
            UserField::Db => "db",
            UserField::Ge => "ge",
            UserField::ExternalId => "external_id",
        }
    }

    /// Position in `ALL` (and in per-field arrays sized by it).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(s: &str) -> Option<UserField> {
        UserField::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Channel ids are sent as is and never hashed.
    pub fn is_channel_id(self) -> bool {
        self.pii().is_none()
    }

    /// Ids that are Graph object ids (digits only).
    pub fn is_numeric_id(self) -> bool {
        matches!(
            self,
            UserField::WabaId | UserField::PageId | UserField::IgAccountId
        )
    }

    /// How the field is normalized before hashing; `None` for channel ids.
    pub fn pii(self) -> Option<PiiKind> {
        Some(match self {
            UserField::Em => PiiKind::Email,
            UserField::Ph => PiiKind::Phone,
            UserField::Fn | UserField::Ln => PiiKind::Name,
            UserField::Ct => PiiKind::City,
            UserField::St => PiiKind::State,
            UserField::Zp => PiiKind::Zip,
            UserField::Country => PiiKind::Country,
            UserField::Db => PiiKind::DateOfBirth,
            UserField::Ge => PiiKind::Gender,
            UserField::ExternalId => PiiKind::ExternalId,
            _ => return None,
        })
    }
}

/// The JSON type of a `custom_data` field Meta documents, when it is not a string.
pub fn custom_field_kind(name: &str) -> CustomKind {
    match name {
        "value" | "predicted_ltv" | "net_revenue" => CustomKind::Number,
        "num_items" => CustomKind::Integer,
        "content_ids" => CustomKind::List,
        "contents" => CustomKind::Json,
        _ => CustomKind::String,
    }
}

/// See [`custom_field_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomKind {
    String,
    Number,
    Integer,
    List,
    Json,
}

/// The `custom_data` keys Meta documents (capi-spec.md §2).
pub const CUSTOM_KEYS: [&str; 12] = [
    "value",
    "currency",
    "order_id",
    "content_ids",
    "content_type",
    "contents",
    "num_items",
    "content_name",
    "content_category",
    "predicted_ltv",
    "net_revenue",
    "delivery_category",
];

/// ISO 3166-1 alpha-2 codes in use, lower case (as Meta wants `country` before hashing).
const COUNTRIES: &str = "ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

/// A lower-case ISO 3166-1 alpha-2 code that exists (`xx` does not).
pub fn is_country(code: &str) -> bool {
    // The list is sorted: a binary search over its 2-letter slots, no allocation.
    if code.len() != 2 {
        return false;
    }
    let n = COUNTRIES.len().div_ceil(3);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match COUNTRIES[mid * 3..mid * 3 + 2].cmp(code) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    false
}

/// Graph ids are decimal digits.
pub fn is_graph_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A SHA-256 digest in hex (64 hex digits, either case): a value that is one is already hashed.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// ISO 4217 active codes (XTS and XXX, test and "no currency", left out).
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL";

/// An upper-case ISO 4217 code.
pub fn is_currency(code: &str) -> bool {
    // The list is sorted: a binary search over its 3-letter slots, no allocation.
    let n = CURRENCIES.len().div_ceil(4);
    if code.len() != 3 {
        return false;
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match CURRENCIES[mid * 4..mid * 4 + 3].cmp(code) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies() {
        assert!(is_currency("USD") && is_currency("BRL") && is_currency("AED"));
        assert!(is_currency("ZWL") && is_currency("EUR"));
        assert!(!is_currency("usd") && !is_currency("XXX") && !is_currency("US"));
        assert!(!is_currency("ABC") && !is_currency("USDD"));
    }

    #[test]
    fn countries_are_real_codes() {
        let all: Vec<&str> = COUNTRIES.split(' ').collect();
        assert_eq!(all.len(), 249);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert!(all.iter().all(|c| is_country(c)));
        for bad in ["xx", "US", "usa", "", "zz", "uk"] {
            assert!(!is_country(bad), "{bad}");
        }
    }

    #[test]
    fn every_channel_requires_two_unhashed_ids() {
        for name in Channel::NAMES {
            let c = Channel::parse(name).unwrap();
            assert_eq!(c.name(), name);
            assert!(c.required_ids().iter().all(|u| u.is_channel_id()));
        }
        for u in UserField::ALL {
            assert_eq!(UserField::from_name(u.name()), Some(u));
            assert_eq!(UserField::ALL[u.index()], u);
        }
    }

    #[test]
    fn ids_and_hashes() {
        assert!(is_graph_id("1234567890") && !is_graph_id("") && !is_graph_id("12a"));
        assert!(!is_graph_id(&"1".repeat(33)));
        assert!(is_sha256_hex(&"aB".repeat(32)) && !is_sha256_hex(&"g".repeat(64)));
        assert_eq!(standard_event_name("Purchase"), Some("Purchase"));
        assert_eq!(standard_event_name("purchase"), None);
    }
}
