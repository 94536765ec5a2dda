//! Which Azure identity answers, from the environment and AKS's azure.json.
//!
//! Resolution is a pure function of an environment lookup and the parsed
//! azure.json, so every precedence rule is unit-tested. In order:
//!
//! 1. Workload identity: `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_CLIENT_ID`
//!    and `AZURE_TENANT_ID` (azure.json's `aadClientId`/`tenantId` fill gaps).
//! 2. A service principal from the environment: `AZURE_CLIENT_ID`,
//!    `AZURE_TENANT_ID` and `AZURE_CLIENT_SECRET` or
//!    `AZURE_CLIENT_CERTIFICATE_PATH` (PEM).
//! 3. azure.json, when present: `useFederatedWorkloadIdentityExtension`
//!    (`aadFederatedTokenFile`), then `useManagedIdentityExtension`
//!    (`userAssignedIdentityID`: a client ID, or a resource ID), then a service
//!    principal (`aadClientId` with `aadClientSecret` or `aadClientCertPath`).
//! 4. Managed identity through IMDS: user-assigned when `AZURE_CLIENT_ID` is
//!    set (a client ID, or a resource ID starting `/subscriptions/`), else
//!    system-assigned.
//!
//! The Entra authority is `AZURE_AUTHORITY_HOST`, else azure.json's `cloud`,
//! else `https://login.microsoftonline.com`. It receives client secrets and
//! assertions: https only, or plain http to loopback ([`crate::endpoint`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The fields pullcred reads from AKS's `/etc/kubernetes/azure.json`, named
/// as cloud-provider-azure names them (pkg/provider/config, azclient). Other
/// fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureJson {
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default, rename = "aadClientId")]
    pub aad_client_id: String,
    #[serde(default, rename = "aadClientSecret")]
    pub aad_client_secret: Option<Secret>,
    #[serde(default, rename = "aadClientCertPath")]
    pub aad_client_cert_path: String,
    #[serde(default, rename = "aadClientCertPassword")]
    pub aad_client_cert_password: Option<Secret>,
    #[serde(default)]
    pub use_managed_identity_extension: bool,
    #[serde(default, rename = "userAssignedIdentityID")]
    pub user_assigned_identity_id: String,
    #[serde(default, rename = "aadFederatedTokenFile")]
    pub aad_federated_token_file: String,
    #[serde(default)]
    pub use_federated_workload_identity_extension: bool,
}

impl AzureJson {
    pub fn parse(bytes: &[u8]) -> Result<AzureJson, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not valid azure.json: {e}"))
    }
}

/// A user-assigned managed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssigned {
    ClientId(String),
    ResourceId(String),
}

impl UserAssigned {
    fn from_id(id: &str) -> UserAssigned {
        if id.to_ascii_lowercase().starts_with("/subscriptions/") {
            UserAssigned::ResourceId(id.to_string())
        } else {
            UserAssigned::ClientId(id.to_string())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ManagedIdentity(Option<UserAssigned>),
    Workload {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    Secret {
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    Certificate {
        tenant: String,
        client_id: String,
        pem_file: PathBuf,
    },
    /// A pod's service-account token as the client assertion (KEP-4412).
    ServiceAccount {
        tenant: String,
        client_id: String,
        token: Secret,
    },
}

/// The identity to use and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub credential: Credential,
    /// `https://login.microsoftonline.com`, no trailing slash.
    pub authority: String,
    /// The tenant, when configuration names one (else the token's `tid`).
    pub tenant: Option<String>,
    /// "environment" or "azure.json <path>", for errors.
    pub origin: String,
}

impl Identity {
    /// A short description for logs and errors: kind and identifiers only.
    pub fn describe(&self) -> String {
        let what = match &self.credential {
            Credential::ManagedIdentity(None) => "system-assigned managed identity".to_string(),
            Credential::ManagedIdentity(Some(UserAssigned::ClientId(c))) => {
                format!("user-assigned managed identity (client ID {c})")
            }
            Credential::ManagedIdentity(Some(UserAssigned::ResourceId(r))) => {
                format!("user-assigned managed identity ({r})")
            }
            Credential::Workload { client_id, .. } => {
                format!("workload identity (client ID {client_id})")
            }
            Credential::Secret { client_id, .. } => {
                format!("service principal {client_id} (secret)")
            }
            Credential::Certificate { client_id, .. } => {
                format!("service principal {client_id} (certificate)")
            }
            Credential::ServiceAccount { client_id, .. } => {
                format!("workload identity (client ID {client_id})")
            }
        };
        format!("{what}, from {}", self.origin)
    }
}

/// Maps azure.json's `cloud` to its Entra authority.
pub fn authority_of_cloud(cloud: &str) -> Result<&'static str, String> {
    match cloud.to_ascii_lowercase().as_str() {
        "" | "azurepubliccloud" | "azurecloud" => Ok(PUBLIC_AUTHORITY),
        "azurechinacloud" => Ok("https://login.chinacloudapi.cn"),
        "azureusgovernmentcloud" | "azureusgovernment" => Ok("https://login.microsoftonline.us"),
        "azuregermancloud" => Err(
            "cloud AzureGermanCloud: Microsoft Cloud Germany was closed on 2021-10-29; use a public-cloud region (germanywestcentral) or set AZURE_AUTHORITY_HOST".into(),
        ),
        _ => Err(format!(
            "cloud {cloud:?} is not one pullcred knows (AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud); set AZURE_AUTHORITY_HOST"
        )),
    }
}

/// `AZURE_AUTHORITY_HOST`, checked ([`crate::endpoint::secret_destination`])
/// and rebuilt from its parts, without a trailing slash: the tenant and
/// `/oauth2/v2.0/token` are appended to it.
fn authority_host(raw: &str) -> Result<String, String> {
    const WHAT: &str = "AZURE_AUTHORITY_HOST";
    let d = crate::endpoint::secret_destination(raw, WHAT)?;
    if d.path_and_query.contains('?') {
        return Err(format!(
            "{WHAT} {raw:?} has a query; want scheme://host[:port]"
        ));
    }
    Ok(format!("{}{}", d.origin(), d.path().trim_end_matches('/')))
}

/// The Entra authority and the node's tenant, when configured: from
/// `AZURE_AUTHORITY_HOST` / `AZURE_TENANT_ID`, else azure.json's `cloud` and
/// `tenantId`. Needs no node identity (a pod's identity uses only these).
pub fn authority_and_tenant(
    env: &dyn Fn(&str) -> Option<String>,
    json: Option<(&Path, &AzureJson)>,
) -> Result<(String, Option<String>), String> {
    let var = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let cfg = json.map(|(_, c)| c);
    let authority = match var("AZURE_AUTHORITY_HOST") {
        Some(a) => authority_host(&a)?,
        None => match json {
            Some((path, c)) => authority_of_cloud(&c.cloud)
                .map_err(|e| format!("azure.json {}: {e}", path.display()))?
                .to_string(),
            None => PUBLIC_AUTHORITY.to_string(),
        },
    };
    let tenant = var("AZURE_TENANT_ID").or_else(|| {
        cfg.map(|c| c.tenant_id.trim().to_string())
            .filter(|t| !t.is_empty())
    });
    Ok((authority, tenant))
}

/// Resolves the identity. `json` is azure.json's path and content when present.
pub fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    json: Option<(&Path, &AzureJson)>,
) -> Result<Identity, String> {
    let var = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let nonempty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let from_json = json.map(|(p, _)| format!("azure.json {}", p.display()));
    let cfg = json.map(|(_, c)| c);
    let (authority, tenant) = authority_and_tenant(env, json)?;
    let client_id = var("AZURE_CLIENT_ID").or_else(|| cfg.and_then(|c| nonempty(&c.aad_client_id)));
    let done = |credential, origin: String| {
        Ok(Identity {
            credential,
            authority: authority.clone(),
            tenant: tenant.clone(),
            origin,
        })
    };
    let need = |v: &Option<String>, origin: &str, because: &str, missing: &str| {
        v.clone()
            .ok_or_else(|| format!("{origin}: {because} is set but {missing} is not"))
    };

    // 1. workload identity from the environment (the webhook's variables)
    if let Some(file) = var("AZURE_FEDERATED_TOKEN_FILE") {
        let o = "environment";
        return done(
            Credential::Workload {
                tenant: need(&tenant, o, "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID")?,
                client_id: need(
                    &client_id,
                    o,
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "AZURE_CLIENT_ID",
                )?,
                token_file: file.into(),
            },
            o.into(),
        );
    }
    // 2. a service principal from the environment
    if let Some(secret) = env("AZURE_CLIENT_SECRET").filter(|s| !s.is_empty()) {
        let o = "environment";
        return done(
            Credential::Secret {
                tenant: need(
                    &var("AZURE_TENANT_ID"),
                    o,
                    "AZURE_CLIENT_SECRET",
                    "AZURE_TENANT_ID",
                )?,
                client_id: need(
                    &var("AZURE_CLIENT_ID"),
                    o,
                    "AZURE_CLIENT_SECRET",
                    "AZURE_CLIENT_ID",
                )?,
                secret: Secret::new(secret),
            },
            o.into(),
        );
    }
    if let Some(pem) = var("AZURE_CLIENT_CERTIFICATE_PATH") {
        let o = "environment";
        if var("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
            return Err(format!(
                "{o}: AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but pullcred reads only unencrypted PEM certificates"
            ));
        }
        return done(
            Credential::Certificate {
                tenant: need(
                    &var("AZURE_TENANT_ID"),
                    o,
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                    "AZURE_TENANT_ID",
                )?,
                client_id: need(
                    &var("AZURE_CLIENT_ID"),
                    o,
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                    "AZURE_CLIENT_ID",
                )?,
                pem_file: pem.into(),
            },
            o.into(),
        );
    }
    // 3. azure.json
    if let (Some(c), Some(o)) = (cfg, from_json.as_deref()) {
        if c.use_federated_workload_identity_extension {
            let file = nonempty(&c.aad_federated_token_file)
                .ok_or_else(|| format!("{o}: useFederatedWorkloadIdentityExtension is true but aadFederatedTokenFile is empty"))?;
            return done(
                Credential::Workload {
                    tenant: need(
                        &tenant,
                        o,
                        "useFederatedWorkloadIdentityExtension",
                        "tenantId",
                    )?,
                    client_id: need(
                        &client_id,
                        o,
                        "useFederatedWorkloadIdentityExtension",
                        "aadClientId",
                    )?,
                    token_file: file.into(),
                },
                o.into(),
            );
        }
        if c.use_managed_identity_extension {
            let id = nonempty(&c.user_assigned_identity_id).map(|i| UserAssigned::from_id(&i));
            return done(Credential::ManagedIdentity(id), o.into());
        }
        let json_client = nonempty(&c.aad_client_id);
        let json_tenant = nonempty(&c.tenant_id);
        if let Some(secret) = c.aad_client_secret.clone().filter(|s| !s.is_empty()) {
            return done(
                Credential::Secret {
                    tenant: need(&json_tenant, o, "aadClientSecret", "tenantId")?,
                    client_id: need(&json_client, o, "aadClientSecret", "aadClientId")?,
                    secret,
                },
                o.into(),
            );
        }
        if let Some(pem) = nonempty(&c.aad_client_cert_path) {
            if c.aad_client_cert_password
                .as_ref()
                .is_some_and(|p| !p.is_empty())
            {
                return Err(format!(
                    "{o}: aadClientCertPassword is set, but pullcred reads only unencrypted PEM certificates (PKCS#12 is not supported)"
                ));
            }
            return done(
                Credential::Certificate {
                    tenant: need(&json_tenant, o, "aadClientCertPath", "tenantId")?,
                    client_id: need(&json_client, o, "aadClientCertPath", "aadClientId")?,
                    pem_file: pem.into(),
                },
                o.into(),
            );
        }
        return Err(format!(
            "{o}: names no identity (useManagedIdentityExtension, useFederatedWorkloadIdentityExtension, aadClientSecret or aadClientCertPath)"
        ));
    }
    // 4. managed identity
    let id = var("AZURE_CLIENT_ID").map(|i| UserAssigned::from_id(&i));
    done(Credential::ManagedIdentity(id), "environment".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn json(s: &str) -> AzureJson {
        AzureJson::parse(s.as_bytes()).unwrap()
    }

    const P: &str = "/etc/kubernetes/azure.json";

    #[test]
    fn nothing_set_is_system_assigned_managed_identity() {
        let id = resolve(&env(&[]), None).unwrap();
        assert_eq!(id.credential, Credential::ManagedIdentity(None));
        assert_eq!(id.authority, PUBLIC_AUTHORITY);
        assert_eq!(id.tenant, None);
    }

    #[test]
    fn client_id_alone_is_user_assigned_by_client_or_resource_id() {
        let id = resolve(&env(&[("AZURE_CLIENT_ID", "c-1")]), None).unwrap();
        assert_eq!(
            id.credential,
            Credential::ManagedIdentity(Some(UserAssigned::ClientId("c-1".into())))
        );
        let r = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let id = resolve(&env(&[("AZURE_CLIENT_ID", r)]), None).unwrap();
        assert_eq!(
            id.credential,
            Credential::ManagedIdentity(Some(UserAssigned::ResourceId(r.into())))
        );
    }

    #[test]
    fn workload_identity_from_the_environment_wins() {
        let e = env(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "c-1"),
            ("AZURE_TENANT_ID", "t-1"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_AUTHORITY_HOST", "https://login.example/"),
        ]);
        let c = json(r#"{"useManagedIdentityExtension": true}"#);
        let id = resolve(&e, Some((Path::new(P), &c))).unwrap();
        assert!(
            matches!(id.credential, Credential::Workload { ref tenant, ref client_id, .. } if tenant == "t-1" && client_id == "c-1")
        );
        assert_eq!(id.authority, "https://login.example");
        let e = env(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_CLIENT_ID", "c"),
        ]);
        let err = resolve(&e, None).unwrap_err();
        assert!(err.contains("AZURE_TENANT_ID"), "{err}");
    }

    #[test]
    fn service_principal_from_the_environment() {
        let e = env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_SECRET", "hunter2"),
        ]);
        let id = resolve(&e, None).unwrap();
        assert!(
            matches!(id.credential, Credential::Secret { ref secret, .. } if secret.expose() == "hunter2")
        );
        assert!(!format!("{id:?}").contains("hunter2"));
        assert!(!id.describe().contains("hunter2"));
        let e = env(&[("AZURE_CLIENT_SECRET", "x"), ("AZURE_TENANT_ID", "t")]);
        assert!(resolve(&e, None).unwrap_err().contains("AZURE_CLIENT_ID"));
        let e = env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
        ]);
        assert!(matches!(
            resolve(&e, None).unwrap().credential,
            Credential::Certificate { .. }
        ));
    }

    #[test]
    fn aks_azure_json_kubelet_identity() {
        // The shape AKS writes: managed identity, the kubelet identity's client ID.
        let c = json(
            r#"{"cloud":"AzurePublicCloud","tenantId":"t-1","subscriptionId":"s","aadClientId":"msi",
                "aadClientSecret":"msi","resourceGroup":"rg","location":"westeurope",
                "useManagedIdentityExtension":true,"userAssignedIdentityID":"k-1"}"#,
        );
        let id = resolve(&env(&[]), Some((Path::new(P), &c))).unwrap();
        assert_eq!(
            id.credential,
            Credential::ManagedIdentity(Some(UserAssigned::ClientId("k-1".into())))
        );
        assert_eq!(id.tenant.as_deref(), Some("t-1"));
        assert!(id.origin.contains(P));
    }

    #[test]
    fn azure_json_clouds_and_service_principals() {
        let c = json(
            r#"{"cloud":"AzureChinaCloud","tenantId":"t","aadClientId":"c","aadClientSecret":"s"}"#,
        );
        let id = resolve(&env(&[]), Some((Path::new(P), &c))).unwrap();
        assert_eq!(id.authority, "https://login.chinacloudapi.cn");
        assert!(matches!(id.credential, Credential::Secret { .. }));
        let c = json(
            r#"{"cloud":"AzureUSGovernmentCloud","tenantId":"t","aadClientId":"c","aadClientCertPath":"/k.pem"}"#,
        );
        let id = resolve(&env(&[]), Some((Path::new(P), &c))).unwrap();
        assert_eq!(id.authority, "https://login.microsoftonline.us");
        assert!(matches!(id.credential, Credential::Certificate { .. }));
        let c = json(
            r#"{"aadClientId":"c","tenantId":"t","aadClientCertPath":"/k.pfx","aadClientCertPassword":"p"}"#,
        );
        assert!(
            resolve(&env(&[]), Some((Path::new(P), &c)))
                .unwrap_err()
                .contains("PKCS#12")
        );
        let c = json(r#"{"cloud":"AzureGermanCloud","useManagedIdentityExtension":true}"#);
        let e = resolve(&env(&[]), Some((Path::new(P), &c))).unwrap_err();
        assert!(e.contains("closed"), "{e}");
        let c = json(r#"{"cloud":"AzureStackCloud","useManagedIdentityExtension":true}"#);
        assert!(
            resolve(&env(&[]), Some((Path::new(P), &c)))
                .unwrap_err()
                .contains("AZURE_AUTHORITY_HOST")
        );
        let c = json(r#"{"tenantId":"t"}"#);
        assert!(
            resolve(&env(&[]), Some((Path::new(P), &c)))
                .unwrap_err()
                .contains("names no identity")
        );
    }

    #[test]
    fn the_authority_host_must_be_https_or_loopback() {
        let with = |a: &str| resolve(&env(&[("AZURE_AUTHORITY_HOST", a)]), None);
        assert_eq!(
            with("https://LOGIN.example:8443/").unwrap().authority,
            "https://login.example:8443"
        );
        assert_eq!(
            with("http://127.0.0.1:5/").unwrap().authority,
            "http://127.0.0.1:5"
        );
        for bad in [
            "http://login.example",
            "http://login.microsoftonline.com/",
            "https://u@login.example",
            "login.example",
            "https://login.example/?x=1",
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.starts_with("AZURE_AUTHORITY_HOST"), "{bad}: {e}");
        }
        assert!(
            with("http://login.example")
                .unwrap_err()
                .contains("plain http")
        );
    }

    #[test]
    fn azure_json_workload_identity() {
        let c = json(
            r#"{"tenantId":"t","aadClientId":"c","useFederatedWorkloadIdentityExtension":true,"aadFederatedTokenFile":"/tok"}"#,
        );
        let id = resolve(&env(&[]), Some((Path::new(P), &c))).unwrap();
        assert_eq!(
            id.credential,
            Credential::Workload {
                tenant: "t".into(),
                client_id: "c".into(),
                token_file: "/tok".into()
            }
        );
    }

    #[test]
    fn azure_json_garbage_is_an_error() {
        assert!(AzureJson::parse(b"{not json").is_err());
        assert!(AzureJson::parse(br#"{"useManagedIdentityExtension":"yes"}"#).is_err());
    }
}
