//! Distribution profiles: where each distribution's kubelet finds its
//! credential provider config, bin dir and flags, and how it is restarted.
//! installer/profiles/*.md states the same facts with their sources; the
//! installer tests compare the two.

use super::hostfs::HostRoot;

/// pullcred's kubelet config on every profile that takes flags.
pub const CONFIG: &str = "/etc/pullcred/credential-provider.yaml";
/// What the installer wrote, for upgrades and `--uninstall`.
pub const STATE: &str = "/etc/pullcred/install-state.json";
/// A replaced file that was not the installer's own is kept as `PATH` + this.
pub const BACKUP_SUFFIX: &str = ".pullcred-prev";

/// kubeadm's kubelet drop-in ExecStart, as the kubeadm packages and
/// <https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/kubelet-integration/>
/// have it (used when the node has no 10-kubeadm.conf).
pub const KUBEADM_EXECSTART: &str = "/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS";

/// nodeadm's own config and bin dir on EKS AL2023 (awslabs/amazon-eks-ami
/// nodeadm/internal/kubelet: it writes config.json at every boot).
pub const NODEADM_CONFIG: &str = "/etc/eks/image-credential-provider/config.json";

/// The matchImages of nodeadm's ECR-only config (awslabs/amazon-eks-ami
/// nodeadm/internal/kubelet/image-credential-provider.template.json), as
/// packer/provision.sh checks them: ours must cover each on eks-al2023.
pub const NODEADM_ECR_GLOBS: [&str; 10] = [
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.amazonaws.eu",
];

/// Where systemd looks for units, highest priority first (systemd.unit(5)).
const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The kubelet's drop-in written by this installer and by packer/provision.sh.
pub const KUBELET_DROPIN: &str = "/etc/systemd/system/kubelet.service.d/20-pullcred.conf";
/// The NodeConfig drop-in nodeadm merges at boot (EKS AL2023).
pub const NODEADM_DROPIN: &str = "/etc/eks/nodeadm.d/50-pullcred.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Kubeadm,
    EksAl2023,
    K3s,
    Rke2,
    Talos,
    Bottlerocket,
}

/// k3s and RKE2 read the credential provider files from these defaults when
/// both exist (k3s pkg/cli/cmds/agent.go `ImageCredProvBinDirFlag` /
/// `ImageCredProvConfigFlag`; pkg/daemons/agent `ImageCredProvAvailable`).
pub const RANCHER_BIN_DIR: &str = "/var/lib/rancher/credentialprovider/bin";
pub const RANCHER_CONFIG: &str = "/var/lib/rancher/credentialprovider/config.yaml";

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::Kubeadm,
        Profile::EksAl2023,
        Profile::K3s,
        Profile::Rke2,
        Profile::Talos,
        Profile::Bottlerocket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Kubeadm => "kubeadm",
            Profile::EksAl2023 => "eks-al2023",
            Profile::K3s => "k3s",
            Profile::Rke2 => "rke2",
            Profile::Talos => "talos",
            Profile::Bottlerocket => "bottlerocket",
        }
    }

    pub fn parse(s: &str) -> Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown profile {s:?} ({})",
                    Profile::ALL.map(|p| p.name()).join(", ")
                )
            })
    }

    /// Whether the installer can change a running node of this kind.
    pub fn writes_host(self) -> bool {
        !matches!(self, Profile::Talos | Profile::Bottlerocket)
    }

    /// The default bin dir.
    pub fn bin_dir(self) -> &'static str {
        match self {
            Profile::Kubeadm => "/usr/local/libexec/kubelet-credential-providers",
            Profile::EksAl2023 => "/etc/eks/image-credential-provider",
            Profile::K3s | Profile::Rke2 => RANCHER_BIN_DIR,
            Profile::Talos => TALOS_BIN_DIR,
            Profile::Bottlerocket => "/usr/libexec/kubernetes/kubelet/plugins",
        }
    }

    /// The default config path.
    pub fn config(self) -> &'static str {
        match self {
            Profile::Kubeadm | Profile::EksAl2023 => CONFIG,
            Profile::K3s | Profile::Rke2 => RANCHER_CONFIG,
            Profile::Talos => TALOS_CONFIG,
            Profile::Bottlerocket => "/etc/kubernetes/credential-provider/config.yaml",
        }
    }

    /// The systemd units that run the kubelet, in order of preference.
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Profile::Kubeadm | Profile::EksAl2023 => &["kubelet"],
            Profile::K3s => &["k3s", "k3s-agent"],
            Profile::Rke2 => &["rke2-server", "rke2-agent"],
            Profile::Talos | Profile::Bottlerocket => &[],
        }
    }

    /// The distribution's own config files (k3s/RKE2 `config.yaml` and its
    /// `config.yaml.d`), where a custom path or a `kubelet-arg` may be set.
    fn rancher_dir(self) -> Option<&'static str> {
        match self {
            Profile::K3s => Some("/etc/rancher/k3s"),
            Profile::Rke2 => Some("/etc/rancher/rke2"),
            _ => None,
        }
    }
}

/// Talos: kubelet flags Talos sets itself when the machine config has a
/// credential provider config (siderolabs/talos pkg/machinery/constants
/// `KubeletCredentialProviderBinDir`, `KubeletCredentialProviderConfig`;
/// internal/app/machined/pkg/controllers/k8s/kubelet_service.go).
pub const TALOS_BIN_DIR: &str = "/usr/local/lib/kubelet/credentialproviders";
pub const TALOS_CONFIG: &str = "/etc/kubernetes/kubelet-credentialproviderconfig.yaml";

/// Which flag a value was set with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Config,
    BinDir,
}

impl Flag {
    pub fn name(self) -> &'static str {
        match self {
            Flag::Config => "image-credential-provider-config",
            Flag::BinDir => "image-credential-provider-bin-dir",
        }
    }
}

/// Every value given to `flag` in `text`, in order: command lines
/// (`--flag=V`, `--flag V`), environment files, YAML keys (`flag: V`) and
/// list items (`- "flag=V"`, as k3s's `kubelet-arg`), JSON arrays. Comment
/// lines (`#` first) are skipped.
pub fn flag_values(text: &str, flag: Flag) -> Vec<String> {
    let name = flag.name();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find(name) {
            let after = &rest[i + name.len()..];
            rest = after;
            // a longer flag name (…-config-dir) is another flag
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                continue;
            }
            let v = after.trim_start_matches(['"', '\'']);
            let v = v.trim_start();
            let v = match v.strip_prefix(['=', ':']) {
                Some(v) => v,
                None if v.len() < after.len() || after.starts_with(' ') => v,
                None => continue,
            };
            let v = v.trim_start().trim_start_matches(['"', '\'']);
            let value: String = v
                .chars()
                .take_while(|c| {
                    !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | ']' | '}' | '\\')
                })
                .collect();
            if value.starts_with('/') {
                out.push(value);
            }
        }
    }
    out
}

/// A flag value found on the node, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub source: String,
}

/// The systemd unit file of `unit` (highest-priority directory) and its
/// drop-ins in systemd's order (sorted by file name; a name in a higher
/// directory hides the same name lower down), as host paths.
pub fn unit_files(host: &HostRoot, unit: &str) -> (Option<String>, Vec<String>) {
    let file = format!("{unit}.service");
    let main = UNIT_DIRS
        .iter()
        .map(|d| format!("{d}/{file}"))
        .find(|p| host.exists(p));
    let mut dropins: std::collections::BTreeMap<String, String> = Default::default();
    for d in UNIT_DIRS.iter().rev() {
        let dir = format!("{d}/{file}.d");
        for name in host.list(&dir) {
            if name.ends_with(".conf") {
                dropins.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    (main, dropins.into_values().collect())
}

/// Joins systemd's `\` continuation lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The last `ExecStart=` of a unit file's text (`Some("")` for a reset line).
pub fn exec_start(text: &str) -> Option<String> {
    logical_lines(text).into_iter().rev().find_map(|l| {
        l.trim_start()
            .strip_prefix("ExecStart=")
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// The kubelet's effective ExecStart without our drop-in: the unit file's,
/// then each drop-in's in order (an empty `ExecStart=` resets it).
/// Also names any drop-in ordered after ours that sets ExecStart.
pub fn effective_exec_start(host: &HostRoot, ours: &str) -> (Option<String>, Vec<String>) {
    let (main, dropins) = unit_files(host, "kubelet");
    let mut exec = main
        .as_deref()
        .and_then(|m| host.read_text(m))
        .and_then(|t| exec_start(&t));
    let our_name = ours.rsplit('/').next().unwrap_or(ours);
    let mut after_ours = Vec::new();
    for d in dropins {
        let name = d.rsplit('/').next().unwrap_or(&d).to_string();
        if name == our_name {
            continue;
        }
        if let Some(e) = host.read_text(&d).and_then(|t| exec_start(&t))
            && !e.is_empty()
        {
            if name.as_str() > our_name {
                after_ours.push(d.clone());
            }
            exec = Some(e);
        }
    }
    (exec.filter(|e| !e.is_empty()), after_ours)
}

/// The files on the node that may set the kubelet's credential provider
/// flags, other than the installer's own (host paths).
pub fn flag_sources(host: &HostRoot, profile: Profile, unit: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    match profile {
        Profile::Kubeadm | Profile::EksAl2023 => {
            let (main, dropins) = unit_files(host, "kubelet");
            out.extend(main);
            out.extend(dropins.into_iter().filter(|d| d != KUBELET_DROPIN));
            out.extend(
                [
                    "/var/lib/kubelet/kubeadm-flags.env",
                    "/etc/default/kubelet",
                    "/etc/sysconfig/kubelet",
                    "/etc/eks/kubelet/environment",
                ]
                .map(String::from),
            );
            if profile == Profile::EksAl2023 {
                for name in host.list("/etc/eks/nodeadm.d") {
                    let p = format!("/etc/eks/nodeadm.d/{name}");
                    if p != NODEADM_DROPIN {
                        out.push(p);
                    }
                }
            }
        }
        Profile::K3s | Profile::Rke2 => {
            let dir = profile.rancher_dir().unwrap_or_default();
            out.push(format!("{dir}/config.yaml"));
            for name in host.list(&format!("{dir}/config.yaml.d")) {
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    out.push(format!("{dir}/config.yaml.d/{name}"));
                }
            }
            for u in profile.units() {
                if unit.is_some_and(|x| x != *u) {
                    continue;
                }
                let (main, dropins) = unit_files(host, u);
                if let Some(m) = main {
                    out.push(format!("{m}.env"));
                    out.push(m);
                }
                out.extend(dropins);
                out.push(format!("/etc/default/{u}"));
                out.push(format!("/etc/sysconfig/{u}"));
            }
        }
        Profile::Talos | Profile::Bottlerocket => {}
    }
    out.retain(|p| host.exists(p));
    out
}

/// Every credential provider flag value set on the node (outside the
/// installer's own files), in the order the files were read.
pub fn found_flags(host: &HostRoot, sources: &[String], flag: Flag) -> Vec<Found> {
    let mut out = Vec::new();
    for s in sources {
        if let Some(text) = host.read_text(s) {
            for value in flag_values(&text, flag) {
                out.push(Found {
                    value,
                    source: s.clone(),
                });
            }
        }
    }
    out
}

/// The unit that runs the kubelet: `given`, else the one unit file that
/// exists, else the enabled one.
pub fn detect_unit(
    host: &HostRoot,
    profile: Profile,
    given: Option<&str>,
) -> Result<String, String> {
    if let Some(u) = given {
        return Ok(u.trim_end_matches(".service").to_string());
    }
    let present: Vec<&str> = profile
        .units()
        .iter()
        .copied()
        .filter(|u| unit_files(host, u).0.is_some())
        .collect();
    match present.as_slice() {
        [one] => Ok(one.to_string()),
        [] if profile.units().len() == 1 => Ok(profile.units()[0].to_string()),
        [] => Err(format!(
            "no {} unit file on the node: is this a {} node? (or pass --service UNIT)",
            profile.units().join(" or "),
            profile.name()
        )),
        many => {
            let enabled: Vec<&&str> = many
                .iter()
                .filter(|u| {
                    host.exists(&format!(
                        "/etc/systemd/system/multi-user.target.wants/{u}.service"
                    ))
                })
                .collect();
            match enabled.as_slice() {
                [one] => Ok(one.to_string()),
                _ => Err(format!(
                    "both {} are installed: pass --service UNIT",
                    many.join(" and ")
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flag_values_in_every_syntax() {
        let cases = [
            (
                "KUBELET_KUBEADM_ARGS=\"--image-credential-provider-config=/etc/a.yaml --v=2\"",
                "/etc/a.yaml",
            ),
            (
                "ExecStart=/usr/bin/kubelet --image-credential-provider-config /etc/b.yaml",
                "/etc/b.yaml",
            ),
            (
                "image-credential-provider-config: /etc/c.yaml",
                "/etc/c.yaml",
            ),
            (
                "image-credential-provider-config: \"/etc/d.yaml\"",
                "/etc/d.yaml",
            ),
            (
                "kubelet-arg:\n  - \"image-credential-provider-config=/etc/e.yaml\"",
                "/etc/e.yaml",
            ),
            (
                "    flags: [\"--image-credential-provider-config=/etc/f.json\"]",
                "/etc/f.json",
            ),
            (
                "      - --image-credential-provider-config=/etc/g.yaml",
                "/etc/g.yaml",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                flag_values(text, Flag::Config),
                vec![want.to_string()],
                "{text}"
            );
        }
        assert!(flag_values("# --image-credential-provider-config=/x", Flag::Config).is_empty());
        assert!(flag_values("--image-credential-provider-config-dir=/x", Flag::Config).is_empty());
        assert_eq!(
            flag_values(
                "--image-credential-provider-bin-dir=/opt/bin --image-credential-provider-config=/c",
                Flag::BinDir
            ),
            vec!["/opt/bin".to_string()]
        );
    }

    #[test]
    fn exec_start_joins_continuations_and_keeps_the_last() {
        let unit = "[Service]\nExecStart=/usr/bin/kubelet \\\n    --config /etc/kubernetes/kubelet/config.json \\\n    $NODEADM_KUBELET_ARGS\n";
        assert_eq!(
            exec_start(unit).unwrap(),
            "/usr/bin/kubelet --config /etc/kubernetes/kubelet/config.json $NODEADM_KUBELET_ARGS"
        );
        assert_eq!(exec_start("ExecStart=/a\nExecStart=\n").unwrap(), "");
        assert_eq!(exec_start("[Service]\n"), None);
    }

    #[test]
    fn profiles_parse() {
        for p in Profile::ALL {
            assert_eq!(Profile::parse(p.name()), Ok(p));
        }
        assert!(
            Profile::parse("k8s")
                .unwrap_err()
                .contains("kubeadm, eks-al2023")
        );
    }
}
