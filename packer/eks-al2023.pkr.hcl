# Amazon EKS AL2023 node image with pullcred baked in.
#
#   packer build -var pullcred_binary=./pullcred packer/eks-al2023.pkr.hcl
#
# Starts from the Amazon EKS optimized AL2023 AMI and runs provision.sh
# --flavor eks-al2023: the binary goes next to ecr-credential-provider in
# nodeadm's bin dir, our kubelet config to /etc/pullcred/, and a NodeConfig
# drop-in in /etc/eks/nodeadm.d/ points the kubelet at it. nodeadm's own
# config.json is left alone. See packer/README.md.
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

variable "kubernetes_version" {
  type        = string
  default     = "1.33"
  description = "Kubernetes minor version of the EKS AMI to start from."
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "x86_64 or arm64; pullcred_binary must match."

  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch must be x86_64 or arm64."
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
  description = "AMI name pattern to start from; empty means the newest EKS AL2023 standard AMI for kubernetes_version and arch."
}

variable "source_ami_owners" {
  type        = list(string)
  default     = ["602401143452"]
  description = "Account that publishes the EKS optimized AMIs in this region (602401143452 in most commercial regions; see the EKS docs for China, GovCloud and opt-in regions)."
}

variable "ami_name_prefix" {
  type    = string
  default = "pullcred-eks-al2023"
}

variable "pullcred_version" {
  type        = string
  default     = "dev"
  description = "Version of pullcred_binary, recorded in the AMI name and tags."
}

variable "pullcred_cloud" {
  type        = string
  default     = "aws"
  description = "Sources for `pullcred config generate --cloud`; must include aws on EKS."

  validation {
    condition     = contains(split(",", var.pullcred_cloud), "aws")
    error_message = "The pullcred_cloud must include aws: on EKS the config replaces nodeadm's ECR-only one."
  }
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
  source_ami_name = var.source_ami_name != "" ? var.source_ami_name : "amazon-eks-node-al2023-${var.arch}-standard-${var.kubernetes_version}-v*"
  audience_arg    = var.pullcred_token_audience != "" ? "--token-audience '${var.pullcred_token_audience}'" : ""
  prepull_args    = join(" ", [for i in var.prepull_images : "'${i}'"])
}

source "amazon-ebs" "eks-al2023" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ec2-user"
  ami_name      = "${var.ami_name_prefix}-${var.kubernetes_version}-${var.arch}-pullcred-${var.pullcred_version}-${local.timestamp}"

  source_ami_filter {
    filters = {
      name                = local.source_ami_name
      architecture        = var.arch
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = var.source_ami_owners
    most_recent = true
  }

  tags = {
    Name               = "${var.ami_name_prefix}-${var.kubernetes_version}-${var.arch}"
    kubernetes_version = var.kubernetes_version
    pullcred_version   = var.pullcred_version
    source_ami_id      = "{{ .SourceAMI }}"
    source_ami_name    = "{{ .SourceAMIName }}"
  }
}

build {
  sources = ["source.amazon-ebs.eks-al2023"]

  provisioner "file" {
    source      = var.pullcred_binary
    destination = "/tmp/pullcred"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }} --binary /tmp/pullcred --flavor eks-al2023 --cloud '${var.pullcred_cloud}' ${local.audience_arg}"
  }

  # Optional: pre-pull var.prepull_images through containerd's CRI socket with
  # the kubelet config just installed (prepull.sh skips when the list is empty).
  provisioner "shell" {
    script          = "${path.root}/prepull.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }} --flavor eks-al2023 -- ${local.prepull_args}"
  }

  provisioner "shell" {
    inline = [
      "sudo rm -f /tmp/pullcred",
      "sudo /etc/eks/image-credential-provider/pullcred config validate /etc/pullcred/credential-provider.yaml --bin-dir /etc/eks/image-credential-provider --strict",
      "cat /etc/eks/nodeadm.d/50-pullcred.yaml",
    ]
  }
}
