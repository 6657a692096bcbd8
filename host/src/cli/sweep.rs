//! The demo's privacy sweep: looks for personal-data strings in everything the service kept
//! (rows of every table, the raw database file, the log), ignoring case, and proves on every
//! place that it can find what it looks for before it reports "none found".

/// One place searched, as text: a table's rows, the raw file (lossily decoded), the log.
pub struct Place {
    /// What to call it in a finding ("table users", "the log").
    pub name: String,
    /// Its text, already lower-cased.
    lowered: String,
}

impl Place {
    /// A place with the given text.
    pub fn new(name: impl Into<String>, text: &str) -> Self {
        Self { name: name.into(), lowered: text.to_lowercase() }
    }

    /// Whether `needle` occurs here, ignoring case.
    fn contains(&self, needle: &str) -> bool {
        self.lowered.contains(&needle.to_lowercase())
    }
}

/// A personal-data string found in a place.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    /// Where.
    pub place: String,
    /// What.
    pub needle: String,
}

/// Why a sweep cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SweepError {
    /// There is nothing to look for: a sweep over an empty list finds nothing, trivially.
    #[error("the sweep has no personal-data strings to look for")]
    NothingToFind,
    /// There is nowhere to look.
    #[error("the sweep has no place to look in")]
    NowhereToLook,
    /// The positive control failed: a planted string was not found in a place.
    #[error("the sweep could not find a string planted in {place}")]
    ControlMissed {
        /// The place.
        place: String,
    },
}

/// A string the caller planted on purpose in some places before the sweep: the sweep must
/// find it in each of them (written in another case), or it cannot be trusted to find
/// anything.
pub struct Control {
    /// The planted string.
    pub planted: String,
    /// The places it was planted in.
    pub places: Vec<String>,
}

/// Looks for each needle in each place (ignoring case) and returns the findings. `skip`
/// says which (place, needle) pairs are expected (e.g. account data the admin typed in).
///
/// First the positive control: the planted string, with the case of every letter swapped,
/// must be found in every place it was planted in.
pub fn sweep(
    places: &[Place],
    needles: &[String],
    control: &Control,
    skip: impl Fn(&str, &str) -> bool,
) -> Result<Vec<Finding>, SweepError> {
    if !needles.iter().any(|n| !n.trim().is_empty()) {
        return Err(SweepError::NothingToFind);
    }
    if places.is_empty() || control.places.is_empty() {
        return Err(SweepError::NowhereToLook);
    }
    let swapped = swap_case(&control.planted);
    for name in &control.places {
        if !places.iter().any(|p| &p.name == name && p.contains(&swapped)) {
            return Err(SweepError::ControlMissed { place: name.clone() });
        }
    }
    let mut found = Vec::new();
    for place in places {
        for needle in needles {
            if !needle.trim().is_empty() && !skip(&place.name, needle) && place.contains(needle) {
                found.push(Finding { place: place.name.clone(), needle: needle.clone() });
            }
        }
    }
    Ok(found)
}

/// `needle` with the case of every letter swapped, so the control shows that case is ignored.
fn swap_case(needle: &str) -> String {
    needle
        .chars()
        .flat_map(|c| {
            if c.is_uppercase() { c.to_lowercase().collect::<Vec<_>>() } else { c.to_uppercase().collect::<Vec<_>>() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needles() -> Vec<String> {
        vec!["Tom Hardcastle".into(), "tom@superbigcorp.example".into()]
    }

    fn control(places: &[&str]) -> Control {
        Control { planted: "Zebediah Quill".into(), places: places.iter().map(|p| p.to_string()).collect() }
    }

    #[test]
    fn finds_a_needle_in_any_case() {
        let places =
            [Place::new("the log", "INFO zebediah quill; TOM HARDCASTLE leaked"), Place::new("table facts", "1,2,3")];
        let found = sweep(&places, &needles(), &control(&["the log"]), |_, _| false).unwrap();
        assert_eq!(found, vec![Finding { place: "the log".into(), needle: "Tom Hardcastle".into() }]);
    }

    #[test]
    fn clean_places_give_no_findings() {
        let places = [Place::new("the log", "INFO Zebediah Quill"), Place::new("table teams", "ZEBEDIAH QUILL")];
        assert_eq!(sweep(&places, &needles(), &control(&["the log", "table teams"]), |_, _| false).unwrap(), vec![]);
    }

    #[test]
    fn a_control_missing_from_one_place_fails_the_sweep() {
        let places = [Place::new("the log", "INFO Zebediah Quill"), Place::new("the database file", "nothing here")];
        assert_eq!(
            sweep(&places, &needles(), &control(&["the log", "the database file"]), |_, _| false),
            Err(SweepError::ControlMissed { place: "the database file".into() })
        );
        assert_eq!(
            sweep(&places, &needles(), &control(&["a place never read"]), |_, _| false),
            Err(SweepError::ControlMissed { place: "a place never read".into() })
        );
    }

    #[test]
    fn expected_pairs_are_skipped() {
        let places = [Place::new("table users", "tom@superbigcorp.example zebediah quill")];
        let found = sweep(&places, &needles(), &control(&["table users"]), |place, needle| {
            place == "table users" && needle.contains('@')
        })
        .unwrap();
        assert_eq!(found, vec![]);
    }

    #[test]
    fn nothing_to_find_or_nowhere_to_look_is_refused() {
        let places = [Place::new("the log", "zebediah quill")];
        let c = control(&["the log"]);
        assert_eq!(sweep(&places, &[], &c, |_, _| false), Err(SweepError::NothingToFind));
        assert_eq!(sweep(&places, &["  ".into()], &c, |_, _| false), Err(SweepError::NothingToFind));
        assert_eq!(sweep(&[], &needles(), &c, |_, _| false), Err(SweepError::NowhereToLook));
        assert_eq!(sweep(&places, &needles(), &control(&[]), |_, _| false), Err(SweepError::NowhereToLook));
    }

    #[test]
    fn swapped_case_differs_but_matches() {
        assert_eq!(swap_case("Tom Ä"), "tOM ä");
    }
}
