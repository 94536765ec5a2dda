# Ubuntu node image (self-managed or kubeadm clusters) with pullcred baked in.
#
#   packer build -var pullcred_binary=./pullcred packer/ubuntu.pkr.hcl
#
# Starts from Canonical's Ubuntu server AMI and runs provision.sh --flavor
# kubeadm: the binary goes to /usr/local/libexec/kubelet-credential-providers,
# the kubelet config to /etc/pullcred/, and a systemd drop-in
# (kubelet.service.d/20-pullcred.conf) adds the two kubelet flags without
# touching KUBELET_EXTRA_ARGS. Install kubelet/kubeadm before this template's
# provisioners (or in a parent template) so the drop-in copies your
# 10-kubeadm.conf ExecStart; without one it uses kubeadm's standard line.
# See packer/README.md.
#
# Written for Packer 1.6.6 and later: the amazon-ebs builder is built in, so
# there is no packer {} block with required_plugins (packer init came in 1.7).

packer {
  required_version = ">= 1.6.6"
}

variable "pullcred_binary" {
  type        = string
  description = "Path to the Linux pullcred binary to bake in (built for the AMI's architecture)."
}

variable "region" {
  type    = string
  default = "us-west-2"
}

variable "ubuntu_release" {
  type        = string
  default     = "noble-24.04"
  description = "Codename-version part of Canonical's AMI name, e.g. noble-24.04 or jammy-22.04."
}

variable "arch" {
  type        = string
  default     = "amd64"
  description = "amd64 or arm64 (Canonical's naming); pullcred_binary must match."

  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch must be amd64 or arm64."
  }
}

variable "instance_type" {
  type        = string
  default     = "t3.medium"
  description = "Build instance type; use a Graviton type (m7g.medium) for arm64."
}

variable "source_ami_name" {
  type        = string
  default     = ""
  description = "AMI name pattern to start from; empty means Canonical's newest server AMI for ubuntu_release and arch."
}

variable "source_ami_owners" {
  type        = list(string)
  default     = ["099720109477"]
  description = "Canonical's account (099720109477 in commercial regions)."
}

variable "ami_name_prefix" {
  type    = string
  default = "pullcred-ubuntu"
}

variable "pullcred_version" {
  type        = string
  default     = "dev"
  description = "Version of pullcred_binary, recorded in the AMI name and tags."
}

variable "pullcred_cloud" {
  type        = string
  default     = "aws"
  description = "Sources for `pullcred config generate --cloud`: aws, gcp, azure, generic, or a list such as aws,gcp."
}

variable "pullcred_token_audience" {
  type        = string
  default     = ""
  description = "If set, `--token-audience` for config generate (service-account token mode, kubelet 1.33+)."
}

variable "prepull_images" {
  type        = list(string)
  default     = []
  description = "Images to pre-pull into the image's containerd (k8s.io namespace) with `pullcred prepull`, through CRI and with the credentials the kubelet would use; empty skips the step. The build instance's identity must be allowed to pull them."

  validation {
    condition     = length([for i in var.prepull_images : i if regex_replace(i, "[-A-Za-z0-9._:@/]", "") != "" || i == "" || substr(i, 0, 1) == "-"]) == 0
    error_message = "Each prepull_images entry must be an image reference such as registry.example.com/team/app:1.0."
  }
}

variable "subnet_id" {
  type    = string
  default = ""
}

locals {
  timestamp       = formatdate("YYYYMMDDhhmmss", timestamp())
  source_ami_name = var.source_ami_name != "" ? var.source_ami_name : "ubuntu/images/hvm-ssd-gp3/ubuntu-${var.ubuntu_release}-${var.arch}-server-*"
  audience_arg    = var.pullcred_token_audience != "" ? "--token-audience '${var.pullcred_token_audience}'" : ""
  prepull_args    = join(" ", [for i in var.prepull_images : "'${i}'"])
}

source "amazon-ebs" "ubuntu" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ubuntu"
  ami_name      = "${var.ami_name_prefix}-${var.ubuntu_release}-${var.arch}-pullcred-${var.pullcred_version}-${local.timestamp}"

  source_ami_filter {
    filters = {
      name                = local.source_ami_name
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = var.source_ami_owners
    most_recent = true
  }

  tags = {
    Name             = "${var.ami_name_prefix}-${var.ubuntu_release}-${var.arch}"
    pullcred_version = var.pullcred_version
    source_ami_id    = "{{ .SourceAMI }}"
    source_ami_name  = "{{ .SourceAMIName }}"
  }
}

build {
  sources = ["source.amazon-ebs.ubuntu"]

  provisioner "file" {
    source      = var.pullcred_binary
    destination = "/tmp/pullcred"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }} --binary /tmp/pullcred --flavor kubeadm --cloud '${var.pullcred_cloud}' ${local.audience_arg}"
  }

  # Optional: pre-pull var.prepull_images through containerd's CRI socket with
  # the kubelet config just installed (prepull.sh skips when the list is empty).
  provisioner "shell" {
    script          = "${path.root}/prepull.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }} --flavor kubeadm -- ${local.prepull_args}"
  }

  provisioner "shell" {
    inline = [
      "sudo rm -f /tmp/pullcred",
      "sudo /usr/local/libexec/kubelet-credential-providers/pullcred config validate /etc/pullcred/credential-provider.yaml --bin-dir /usr/local/libexec/kubelet-credential-providers --strict",
      "cat /etc/systemd/system/kubelet.service.d/20-pullcred.conf",
    ]
  }
}
