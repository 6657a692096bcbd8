//! ISO 4217 currency codes: the one fixed standard a connector's strings may come from.
//!
//! A money amount crosses the boundary with a currency code, a string the connector chose.
//! It is kept only if it is an active alphabetic code of ISO 4217 (List One, as published by
//! the SIX maintenance agency on 2026-01-01), so the code is a closed vocabulary too and can
//! carry no customer data. The list is a sorted static array searched by binary search: no
//! allocation, no hashing, a handful of comparisons per amount.
//!
//! Codes withdrawn from List One (`HRK`, `BGN`, `ANG`, `SLL`, `ZWL`, `CUC`, …) are refused,
//! which means historic CRM records in those currencies are dropped and counted under
//! `unknown_currency` rather than stored. Update the array when SIX publishes a new list;
//! the tests check that it stays sorted and well-formed.

/// The active alphabetic codes of ISO 4217 List One (currencies and funds), sorted.
pub static ACTIVE_CODES: [[u8; 3]; 178] = [
    *b"AED", *b"AFN", *b"ALL", *b"AMD", *b"AOA", *b"ARS", *b"AUD", *b"AWG", *b"AZN", *b"BAM", *b"BBD", *b"BDT",
    *b"BHD", *b"BIF", *b"BMD", *b"BND", *b"BOB", *b"BOV", *b"BRL", *b"BSD", *b"BTN", *b"BWP", *b"BYN", *b"BZD",
    *b"CAD", *b"CDF", *b"CHE", *b"CHF", *b"CHW", *b"CLF", *b"CLP", *b"CNY", *b"COP", *b"COU", *b"CRC", *b"CUP",
    *b"CVE", *b"CZK", *b"DJF", *b"DKK", *b"DOP", *b"DZD", *b"EGP", *b"ERN", *b"ETB", *b"EUR", *b"FJD", *b"FKP",
    *b"GBP", *b"GEL", *b"GHS", *b"GIP", *b"GMD", *b"GNF", *b"GTQ", *b"GYD", *b"HKD", *b"HNL", *b"HTG", *b"HUF",
    *b"IDR", *b"ILS", *b"INR", *b"IQD", *b"IRR", *b"ISK", *b"JMD", *b"JOD", *b"JPY", *b"KES", *b"KGS", *b"KHR",
    *b"KMF", *b"KPW", *b"KRW", *b"KWD", *b"KYD", *b"KZT", *b"LAK", *b"LBP", *b"LKR", *b"LRD", *b"LSL", *b"LYD",
    *b"MAD", *b"MDL", *b"MGA", *b"MKD", *b"MMK", *b"MNT", *b"MOP", *b"MRU", *b"MUR", *b"MVR", *b"MWK", *b"MXN",
    *b"MXV", *b"MYR", *b"MZN", *b"NAD", *b"NGN", *b"NIO", *b"NOK", *b"NPR", *b"NZD", *b"OMR", *b"PAB", *b"PEN",
    *b"PGK", *b"PHP", *b"PKR", *b"PLN", *b"PYG", *b"QAR", *b"RON", *b"RSD", *b"RUB", *b"RWF", *b"SAR", *b"SBD",
    *b"SCR", *b"SDG", *b"SEK", *b"SGD", *b"SHP", *b"SLE", *b"SOS", *b"SRD", *b"SSP", *b"STN", *b"SVC", *b"SYP",
    *b"SZL", *b"THB", *b"TJS", *b"TMT", *b"TND", *b"TOP", *b"TRY", *b"TTD", *b"TWD", *b"TZS", *b"UAH", *b"UGX",
    *b"USD", *b"USN", *b"UYI", *b"UYU", *b"UYW", *b"UZS", *b"VED", *b"VES", *b"VND", *b"VUV", *b"WST", *b"XAD",
    *b"XAF", *b"XAG", *b"XAU", *b"XBA", *b"XBB", *b"XBC", *b"XBD", *b"XCD", *b"XCG", *b"XDR", *b"XOF", *b"XPD",
    *b"XPF", *b"XPT", *b"XSU", *b"XTS", *b"XUA", *b"XXX", *b"YER", *b"ZAR", *b"ZMW", *b"ZWG",
];

/// Whether `code` is exactly an active ISO 4217 alphabetic code (three uppercase letters).
pub fn is_active_code(code: &[u8]) -> bool {
    match <[u8; 3]>::try_from(code) {
        Ok(code) => ACTIVE_CODES.binary_search(&code).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_and_uppercase() {
        assert!(ACTIVE_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(ACTIVE_CODES.iter().flatten().all(u8::is_ascii_uppercase));
    }

    #[test]
    fn common_codes_pass() {
        for code in ["EUR", "GBP", "USD", "SEK", "JPY", "CHF", "AED", "ZWG", "XCG"] {
            assert!(is_active_code(code.as_bytes()), "{code}");
        }
    }

    #[test]
    fn other_strings_fail() {
        for code in ["XYZ", "eur", "Eur", "EU", "EURO", "", "E R", "HRK", "ANG", "BGN"] {
            assert!(!is_active_code(code.as_bytes()), "{code}");
        }
    }
}
