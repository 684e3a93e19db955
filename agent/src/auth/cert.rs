//! The principal a client certificate names: its subject's common name,
//! else its first DNS or e-mail subject alternative name. The chain itself
//! is checked by TLS before this is asked.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub fn principal(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        if !cn.is_empty() {
            return Some(cn.to_string());
        }
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => Some(s.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_name_else_the_first_alternative_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "bob");
        assert_eq!(principal(p.self_signed(&key).unwrap().der()).as_deref(), Some("bob"));
        let mut p = rcgen::CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        assert_eq!(principal(p.self_signed(&key).unwrap().der()).as_deref(), Some("svc.example"));
        assert_eq!(principal(b"not a certificate"), None);
    }
}
