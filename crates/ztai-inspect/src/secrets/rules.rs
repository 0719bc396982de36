//! The secret rules: one entry per credential format, each with the check its value must pass.
//!
//! Provider formats are written from the providers' documented token layouts (prefix, alphabet,
//! length) and bounded at both ends (`bounded`), so a longer run that merely contains a
//! look-alike is not a token. Rules without a distinctive prefix (assignments, headers, command
//! lines, URLs) carry a context keyword and a stricter value check. Every pattern has a bounded
//! length, so the streaming redactor's hold-back can contain a whole match.

use super::Check;
use ztai_core::Severity;

/// One rule: what it finds, how, and the literals one of which every match contains (see
/// `gate`).
pub(super) struct RuleSpec {
    pub kind: &'static str,
    pub severity: Severity,
    pub pattern: &'static str,
    /// Capture group holding the secret value (0 = whole match).
    pub group: usize,
    pub check: Check,
    /// The byte before the value and the byte after it must not continue a token
    /// (`[A-Za-z0-9_-]`, or `.` followed by a letter or digit after it): a 40-character match
    /// inside a 60-character run is not a 40-character token.
    pub bounded: bool,
    pub literals: &'static [&'static str],
    /// The pattern matches case-insensitively, so its literals are too.
    pub case_insensitive: bool,
}

const fn provider(
    kind: &'static str,
    pattern: &'static str,
    literals: &'static [&'static str],
) -> RuleSpec {
    RuleSpec {
        kind,
        severity: Severity::High,
        pattern,
        group: 0,
        check: Check::Token,
        bounded: true,
        literals,
        case_insensitive: false,
    }
}

pub(super) const RULES: &[RuleSpec] = &[
    RuleSpec {
        kind: "private_key",
        severity: Severity::Critical,
        pattern: r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
        group: 0,
        check: Check::PemBody,
        bounded: false,
        literals: &["-----BEGIN"],
        case_insensitive: false,
    },
    // PuTTY's key file: the header says what it is, the private lines are the key.
    RuleSpec {
        kind: "private_key",
        severity: Severity::Critical,
        pattern: r"PuTTY-User-Key-File-[23]: [a-z0-9-]{3,40}(?s:.{0,2000}?)Private-Lines: [0-9]{1,3}\r?\n[A-Za-z0-9+/=\r\n]{40,8000}",
        group: 0,
        check: Check::Format,
        bounded: false,
        literals: &["PuTTY-User-Key-File-"],
        case_insensitive: false,
    },
    // A JSON Web Key with its private member `d` (RSA, EC, OKP), whichever member comes first;
    // the finding is the private value.
    RuleSpec {
        kind: "jwk_private_key",
        severity: Severity::Critical,
        pattern: r#""kty"\s{0,8}:\s{0,8}"(?:RSA|EC|OKP)"[^{}]{0,6000}?"d"\s{0,8}:\s{0,8}"([A-Za-z0-9_-]{20,2000})""#,
        group: 1,
        check: Check::Token,
        bounded: false,
        literals: &["\"kty\""],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "jwk_private_key",
        severity: Severity::Critical,
        pattern: r#""d"\s{0,8}:\s{0,8}"([A-Za-z0-9_-]{20,2000})"[^{}]{0,6000}?"kty"\s{0,8}:\s{0,8}"(?:RSA|EC|OKP)""#,
        group: 1,
        check: Check::Token,
        bounded: false,
        literals: &["\"kty\""],
        case_insensitive: false,
    },
    // Cloud providers.
    provider(
        "aws_access_key_id",
        // AWS documents the 16 characters as upper-case letters and digits; keys in the wild
        // (and trufflehog's rule) use all ten digits, not only base32's 2-7.
        r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
    ),
    RuleSpec {
        kind: "aws_secret_access_key",
        severity: Severity::Critical,
        pattern: r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
        group: 1,
        check: Check::Token,
        bounded: true,
        literals: &["aws"],
        case_insensitive: true,
    },
    provider(
        "aws_bedrock_api_key",
        r"ABSKQmVkcm9ja0FQSUtleS[A-Za-z0-9+/]{100,300}={0,2}|bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/=%]{0,400}",
        &[
            "ABSKQmVkcm9ja0FQSUtleS",
            "bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t",
        ],
    ),
    RuleSpec {
        kind: "azure_storage_account_key",
        severity: Severity::Critical,
        pattern: r"AccountKey=([A-Za-z0-9+/]{86}==)",
        group: 1,
        check: Check::Token,
        bounded: false,
        literals: &["AccountKey="],
        case_insensitive: false,
    },
    provider(
        "azure_ad_client_secret",
        r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
        &[],
    ),
    provider("google_api_key", r"AIza[0-9A-Za-z_-]{35}", &["AIza"]),
    provider(
        "google_oauth_client_secret",
        r"GOCSPX-[A-Za-z0-9_-]{28}",
        &["GOCSPX-"],
    ),
    provider(
        "google_oauth_access_token",
        r"ya29\.[A-Za-z0-9_-]{30,300}",
        &["ya29."],
    ),
    provider("alibaba_access_key_id", r"LTAI[A-Za-z0-9]{20}", &["LTAI"]),
    provider("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}", &["_v1_"]),
    provider(
        "cloudflare_origin_ca_key",
        r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}",
        &["v1.0-"],
    ),
    provider("heroku_api_key", r"HRKU-AA[0-9A-Za-z_-]{58}", &["HRKU-"]),
    provider(
        "flyio_token",
        r"fo1_[A-Za-z0-9_-]{43}|FlyV1 fm[0-9]_[A-Za-z0-9+/_-]{100,400}={0,3}",
        &["fo1_", "FlyV1 fm"],
    ),
    provider(
        "databricks_token",
        r"dapi[a-f0-9]{32}(?:-[0-9])?",
        &["dapi"],
    ),
    provider(
        "clickhouse_cloud_secret_key",
        r"4b1d[A-Za-z0-9]{38}",
        &["4b1d"],
    ),
    provider(
        "terraform_cloud_token",
        r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}",
        &[".atlasv1."],
    ),
    RuleSpec {
        kind: "vault_token",
        severity: Severity::High,
        pattern: r"hv[sb]\.[A-Za-z0-9_-]{90,300}",
        group: 0,
        check: Check::MixedToken,
        bounded: true,
        literals: &["hvs.", "hvb."],
        case_insensitive: false,
    },
    // Legacy Vault service tokens; `s.` is too short to gate on.
    RuleSpec {
        kind: "vault_token",
        severity: Severity::High,
        pattern: r"s\.[A-Za-z0-9]{24}",
        group: 0,
        check: Check::MixedToken,
        bounded: true,
        literals: &[],
        case_insensitive: false,
    },
    provider(
        "doppler_token",
        r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}",
        &["dp."],
    ),
    provider(
        "dynatrace_token",
        r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}",
        &["dt0c01."],
    ),
    provider(
        "new_relic_key",
        r"NRAK-[A-Z0-9]{27}|NRII-[A-Za-z0-9_-]{32}",
        &["NRAK-", "NRII-"],
    ),
    provider(
        "grafana_token",
        r"glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
        &["glc_", "glsa_"],
    ),
    provider(
        "sentry_token",
        r"sntry[su]_[A-Za-z0-9+/=_-]{60,400}",
        &["sntry"],
    ),
    provider("octopus_deploy_api_key", r"API-[A-Z0-9]{26}", &["API-"]),
    provider("openshift_token", r"sha256~[A-Za-z0-9_-]{43}", &["sha256~"]),
    provider("supabase_token", r"sbp_[a-f0-9]{40}", &["sbp_"]),
    provider("pulumi_token", r"pul-[a-f0-9]{40}", &["pul-"]),
    provider("prefect_token", r"pnu_[A-Za-z0-9]{36}", &["pnu_"]),
    provider("infracost_token", r"ico-[A-Za-z0-9]{32}", &["ico-"]),
    // Source hosting, registries and CI.
    provider(
        "github_token",
        r"gh[pousr]_[A-Za-z0-9]{36}",
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
    ),
    provider(
        "github_fine_grained_pat",
        r"github_pat_[A-Za-z0-9_]{82}",
        &["github_pat_"],
    ),
    provider(
        "gitlab_token",
        r"(?:glpat|gldt|glrt|glcbt|glsoat|glft|glffct|glcst|glwt)-[A-Za-z0-9_-]{20,64}(?:\.[0-9a-z]{2}\.[a-z0-9]{7,9})?|glptt-[A-Za-z0-9_-]{40}|glimt-[A-Za-z0-9_-]{25}|gloas-[A-Za-z0-9_-]{64}|glagent-[A-Za-z0-9_-]{50,128}|GR1348941[A-Za-z0-9_-]{20,64}",
        &[
            "glpat-",
            "gldt-",
            "glrt-",
            "glcbt-",
            "glsoat-",
            "glft-",
            "glffct-",
            "glcst-",
            "glwt-",
            "glptt-",
            "glimt-",
            "gloas-",
            "glagent-",
            "GR1348941",
        ],
    ),
    provider("bitbucket_token", r"ATBB[A-Za-z0-9_=.-]{32}", &["ATBB"]),
    provider(
        "atlassian_api_token",
        r"ATATT3[A-Za-z0-9_=-]{186}",
        &["ATATT3"],
    ),
    provider("npm_token", r"npm_[A-Za-z0-9]{36}", &["npm_"]),
    RuleSpec {
        kind: "npm_auth_token",
        severity: Severity::High,
        pattern: r"//[A-Za-z0-9.-]{1,100}(?::[0-9]{1,5})?/(?:[^\s:]{0,100}/)?:_authToken=[ \t]*([A-Za-z0-9_.+/=-]{8,200})",
        group: 1,
        check: Check::Token,
        bounded: true,
        literals: &[":_authToken="],
        case_insensitive: false,
    },
    provider(
        "pypi_token",
        r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{80,400}",
        &["pypi-AgE"],
    ),
    provider("rubygems_token", r"rubygems_[a-f0-9]{48}", &["rubygems_"]),
    provider(
        "docker_hub_token",
        r"dckr_pat_[A-Za-z0-9_-]{27}",
        &["dckr_pat_"],
    ),
    provider(
        "artifactory_token",
        r"AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59}",
        &["AKCp", "cmVmd"],
    ),
    provider(
        "sourcegraph_token",
        r"sgp_(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}|sgp_[a-fA-F0-9]{40}",
        &["sgp_"],
    ),
    provider(
        "sonar_token",
        r"sq[pua]_[a-f0-9]{40}",
        &["sqp_", "squ_", "sqa_"],
    ),
    provider(
        "postman_api_key",
        r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",
        &["PMAK-"],
    ),
    provider("linear_api_key", r"lin_api_[A-Za-z0-9]{40}", &["lin_api_"]),
    provider("readme_api_key", r"rdme_[a-z0-9]{70}", &["rdme_"]),
    provider(
        "airtable_token",
        r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}",
        &["pat"],
    ),
    provider(
        "notion_token",
        r"ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43}",
        &["ntn_", "secret_"],
    ),
    // Chat and messaging.
    RuleSpec {
        kind: "slack_token",
        severity: Severity::High,
        pattern: r"xox[bpoas]-(?:[0-9]-)?[0-9]{8,15}-[0-9A-Za-z-]{10,250}|xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{100,200}|xoxe-[0-9]-[A-Za-z0-9]{100,200}|xapp-[0-9]-[A-Za-z0-9]{8,16}-[0-9]{8,16}-[A-Za-z0-9]{20,80}",
        group: 0,
        check: Check::Token,
        bounded: true,
        literals: &["xox", "xapp-"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "slack_webhook",
        severity: Severity::High,
        pattern: r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{40,120}",
        group: 0,
        check: Check::Token,
        bounded: false,
        literals: &["hooks.slack.com/"],
        case_insensitive: false,
    },
    // No literal to gate on: the regex's own prefilter (the `.` separators) serves.
    provider(
        "discord_bot_token",
        r"[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
        &[],
    ),
    provider(
        "telegram_bot_token",
        r"[0-9]{8,10}:AA[0-9A-Za-z_-]{32,33}",
        &[":AA"],
    ),
    provider(
        "facebook_access_token",
        r"EAA[MC][A-Za-z0-9]{80,500}",
        &["EAA"],
    ),
    provider(
        "facebook_app_token",
        r"[0-9]{15,16}(?:\||%7C)[A-Za-z0-9_-]{27}",
        &[],
    ),
    // Payments and commerce.
    provider(
        "stripe_key",
        r"(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{20,247}|whsec_[A-Za-z0-9]{32,64}",
        &["_live_", "_test_", "_prod_", "whsec_"],
    ),
    provider(
        "square_token",
        r"EAAA[A-Za-z0-9_-]{60}|sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43}",
        &["EAA", "sq0"],
    ),
    provider(
        "shopify_token",
        r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
        &["shp"],
    ),
    // Model and AI APIs.
    provider(
        "openai_api_key",
        r"sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,300}T3BlbkFJ[A-Za-z0-9_-]{20,300}|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{100,300}|sk-[A-Za-z0-9]{48}",
        &["sk-"],
    ),
    provider(
        "anthropic_api_key",
        r"sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA",
        &["sk-ant-"],
    ),
    provider(
        "huggingface_token",
        r"hf_[A-Za-z]{34}|api_org_[A-Za-z]{34}",
        &["hf_", "api_org_"],
    ),
    provider("groq_api_key", r"gsk_[A-Za-z0-9]{52}", &["gsk_"]),
    provider("xai_api_key", r"xai-[A-Za-z0-9]{80}", &["xai-"]),
    provider("replicate_token", r"r8_[A-Za-z0-9]{37}", &["r8_"]),
    provider("perplexity_api_key", r"pplx-[A-Za-z0-9]{48}", &["pplx-"]),
    // Mail and other SaaS.
    provider(
        "sendgrid_api_key",
        r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        &["SG."],
    ),
    provider("mailgun_api_key", r"key-[a-f0-9]{32}", &["key-"]),
    provider("mailchimp_api_key", r"[0-9a-f]{32}-us[0-9]{1,2}", &["-us"]),
    provider("twilio_api_key", r"SK[0-9a-f]{32}", &[]),
    provider(
        "mapbox_token",
        r"sk\.eyJ[A-Za-z0-9_-]{50,300}\.[A-Za-z0-9_-]{20,60}",
        &["sk.eyJ"],
    ),
    provider(
        "intra42_client_secret",
        r"s-s4t2(?:ud|af)-[a-f0-9]{64}",
        &["s-s4t2"],
    ),
    provider(
        "maxmind_license_key",
        r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk",
        &["_mmk"],
    ),
    provider(
        "onepassword_service_account_token",
        r"ops_eyJ[A-Za-z0-9+/]{250,2000}={0,3}",
        &["ops_eyJ"],
    ),
    provider(
        "onepassword_secret_key",
        r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
        &["A3-"],
    ),
    RuleSpec {
        kind: "age_secret_key",
        severity: Severity::Critical,
        pattern: r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        group: 0,
        // A bech32 key has a fixed alphabet and length; nothing else looks like it.
        check: Check::Format,
        bounded: true,
        literals: &["AGE-SECRET-KEY-1"],
        case_insensitive: false,
    },
    // Further vendor formats users of gitleaks and trufflehog expect, each with a prefix of its
    // own. Prefixes of three or four letters that identifiers also start with (`rnd_`, `nfp_`)
    // need a randomly cased value (`RandomToken`). Where a literal another rule already gates on
    // occurs in every match (`sk-` in `sk-or-v1-`, `_live_` in `shippo_live_`), the rule gates
    // on it too: the gate's packed search slows with every distinct literal.
    provider(
        "brevo_api_key",
        r"x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}",
        &["sib-"],
    ),
    provider(
        "planetscale_token",
        r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64}",
        &["pscale_"],
    ),
    provider(
        "shippo_token",
        r"shippo_(?:live|test)_[a-f0-9]{40}",
        &["_live_", "_test_"],
    ),
    provider(
        "duffel_token",
        r"duffel_(?:test|live)_[A-Za-z0-9_=-]{43}",
        &["_live_", "_test_"],
    ),
    provider(
        "easypost_api_key",
        r"EZ[AT]K[A-Za-z0-9]{54}",
        &["EZAK", "EZTK"],
    ),
    provider(
        "flutterwave_secret_key",
        r"FLWSECK(?:_TEST)?-[a-h0-9]{32}-X",
        &["FLWSECK"],
    ),
    provider("frameio_token", r"fio-u-[A-Za-z0-9_=-]{64}", &["fio-u-"]),
    provider("typeform_token", r"tfp_[A-Za-z0-9_.=-]{59}", &["tfp_"]),
    provider(
        "hubspot_token",
        r"pat-(?:na|eu)[0-9]-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
        &["pat"],
    ),
    provider("adobe_client_secret", r"p8e-[A-Za-z0-9]{32}", &["p8e-"]),
    provider("clojars_token", r"CLOJARS_[a-z0-9]{60}", &["CLOJARS_"]),
    provider(
        "defined_networking_key",
        r"dnkey-[a-z0-9=_-]{26}-[a-z0-9=_-]{52}",
        &["dnkey-"],
    ),
    provider("nuget_api_key", r"oy2[a-z0-9]{43}", &["oy2"]),
    provider("contentful_token", r"CFPAT-[A-Za-z0-9_-]{43}", &["CFPAT-"]),
    provider(
        "firebase_cloud_messaging_key",
        r"AAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{134}",
        &[":APA91b"],
    ),
    provider(
        "dropbox_token",
        r"sl\.(?:u\.)?[A-Za-z0-9_=-]{130,1400}",
        &["sl."],
    ),
    provider(
        "harness_token",
        r"(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.[A-Za-z0-9]{20}",
        &["pat", "sat."],
    ),
    provider(
        "salesforce_access_token",
        r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{80,120}",
        &["00D"],
    ),
    provider("scalingo_token", r"tk-us-[A-Za-z0-9_-]{48}", &["tk-us-"]),
    provider(
        "yandex_api_key",
        r"AQVN[A-Za-z0-9_-]{35,38}|t1\.[A-Za-z0-9_-]{10,200}={0,2}\.[A-Za-z0-9_-]{86}={0,2}",
        &["AQVN", "t1."],
    ),
    provider("neon_api_key", r"napi_[a-z0-9]{64}", &["napi_"]),
    RuleSpec {
        check: Check::RandomToken,
        ..provider("render_api_key", r"rnd_[A-Za-z0-9]{32}", &["rnd_"])
    },
    RuleSpec {
        check: Check::RandomToken,
        ..provider("netlify_token", r"nfp_[A-Za-z0-9]{36}", &["nfp_"])
    },
    provider(
        "plaid_access_token",
        r"access-(?:sandbox|development|production)-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
        &[
            "access-sandbox-",
            "access-development-",
            "access-production-",
        ],
    ),
    provider(
        "braintree_access_token",
        r"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}",
        &["access_token$"],
    ),
    provider(
        "circleci_token",
        r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}",
        &["CCIPAT_"],
    ),
    provider("buildkite_token", r"bkua_[a-f0-9]{40}", &["bkua_"]),
    provider("figma_token", r"figd_[A-Za-z0-9_-]{40}", &["figd_"]),
    provider(
        "supabase_secret_key",
        r"sb_secret_[A-Za-z0-9_-]{31,64}",
        &["secret_"],
    ),
    provider("mailersend_token", r"mlsn\.[a-f0-9]{64}", &["mlsn."]),
    provider("tencent_secret_id", r"AKID[A-Za-z0-9]{32}", &["AKID"]),
    // The app-only bearer token starts with 21 `A`s, which the filler check would refuse: the
    // value checked (and redacted) is what follows them.
    RuleSpec {
        kind: "twitter_bearer_token",
        severity: Severity::High,
        pattern: r"A{21}([A-Za-z0-9%]{30,150})",
        group: 1,
        check: Check::Token,
        bounded: false,
        literals: &["AAAAAAAAAAAAAAAAAAAAA"],
        case_insensitive: false,
    },
    // Model and agent-tooling APIs beyond the big three.
    provider("nvidia_api_key", r"nvapi-[A-Za-z0-9_-]{64}", &["nvapi-"]),
    provider("cerebras_api_key", r"csk-[a-z0-9]{48}", &["sk-"]),
    provider("openrouter_api_key", r"sk-or-v1-[a-f0-9]{64}", &["sk-"]),
    // `sk-` and 32 hexadecimal digits: DeepSeek, DashScope and other OpenAI-compatible APIs.
    provider("sk_api_key", r"sk-[a-f0-9]{32}", &["sk-"]),
    provider(
        "langsmith_api_key",
        r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}",
        &["lsv2_"],
    ),
    provider(
        "langfuse_secret_key",
        r"sk-lf-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
        &["sk-"],
    ),
    provider(
        "pinecone_api_key",
        r"pcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{50,80}",
        &["sk_"],
    ),
    provider(
        "tavily_api_key",
        r"tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}",
        &["tvly-"],
    ),
    RuleSpec {
        check: Check::RandomToken,
        ..provider("fireworks_api_key", r"fw_[A-Za-z0-9]{24}", &["fw_"])
    },
    provider("elevenlabs_api_key", r"sk_[a-f0-9]{48}", &["sk_"]),
    // Webhook URLs: whoever holds one can post as the integration.
    RuleSpec {
        kind: "discord_webhook",
        severity: Severity::High,
        pattern: r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,72}",
        group: 0,
        check: Check::Token,
        bounded: true,
        literals: &["/api/webhooks/"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "teams_webhook",
        severity: Severity::High,
        pattern: r"https://(?:[A-Za-z0-9-]{1,63}\.webhook\.office\.com/webhookb2|outlook\.office(?:365)?\.com/webhook)/[a-f0-9-]{36}@[a-f0-9-]{36}/IncomingWebhook/[A-Za-z0-9]{32}/[a-f0-9-]{36}(?:/[A-Za-z0-9_-]{40,60})?",
        group: 0,
        check: Check::Token,
        bounded: true,
        literals: &["/IncomingWebhook/"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "zapier_webhook",
        severity: Severity::Medium,
        pattern: r"https://hooks\.zapier\.com/hooks/catch/[0-9]{5,12}/[a-z0-9]{5,12}/?",
        group: 0,
        check: Check::Token,
        bounded: true,
        literals: &["hooks.zapier.com/hooks/catch/"],
        case_insensitive: false,
    },
    // Signed URLs: the signature is a bearer credential until the URL expires.
    RuleSpec {
        kind: "azure_sas_token",
        severity: Severity::High,
        pattern: r"[?&]sig=([A-Za-z0-9%+/]{40,120}(?:%3D|=){0,2})",
        group: 1,
        check: Check::Token,
        bounded: true,
        literals: &["sig="],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "presigned_url",
        severity: Severity::Medium,
        pattern: r"X-(?:Amz|Goog)-Signature=([a-f0-9]{64,512})",
        group: 1,
        check: Check::Token,
        bounded: true,
        literals: &["-Signature="],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "azure_shared_access_key",
        severity: Severity::High,
        pattern: r"SharedAccessKey=([A-Za-z0-9+/]{43}=)",
        group: 1,
        check: Check::Token,
        bounded: true,
        literals: &["SharedAccessKey="],
        case_insensitive: false,
    },
    // Passwords in configuration formats: the field's name says what the value is.
    RuleSpec {
        kind: "xml_password",
        severity: Severity::High,
        // `<password>…</password>` (Maven, Tomcat, NuGet), `<db.secret>…</db.secret>`.
        pattern: r"(?i)<([A-Za-z0-9_.:-]{0,40}(?:passw(?:or)?d|pwd|passphrase|secret|token|api_?key))>[ \t]*([^<>\s]{1,200})[ \t]*</",
        group: 2,
        check: Check::NamedValue,
        bounded: false,
        literals: &[
            "passw",
            "pwd",
            "passphrase",
            "secret",
            "token",
            "apikey",
            "api_key",
        ],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "xml_password",
        severity: Severity::High,
        // .NET `<add key="DbPassword" value="…"/>`, Spring `<property name="…password" value="…"/>`.
        pattern: r#"(?i)<(?:add|property|param|setting|entry)\s[^<>]{0,40}?(?:key|name)\s*=\s*"([^"]{1,80})"\s+value\s*=\s*"([^"]{1,200})""#,
        group: 2,
        check: Check::NamedValue,
        bounded: false,
        literals: &["<add", "<property", "<param", "<setting", "<entry"],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "connection_string_password",
        severity: Severity::High,
        // ADO.NET, ODBC and JDBC keyword strings: `Server=…;User Id=…;Password=…;`.
        pattern: r#"(?i)(?:server|data source|host|uid|user id|user|database|initial catalog|databasename|driver)\s*=[^;\r\n]{1,120};[^"'\r\n]{0,300}?(?-u:\b)(password|pwd)\s*=\s*([^;"'\s]{1,128})"#,
        group: 2,
        check: Check::NamedValue,
        bounded: false,
        literals: &["password", "pwd"],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "url_query_credential",
        severity: Severity::High,
        pattern: r#"(?i)[?&;]((?:password|passwd|pwd|pass|secret|client_secret|api_?key|access_token|auth_token|token))=([^&;\s"'#<>]{1,200})"#,
        group: 2,
        check: Check::NamedValue,
        bounded: false,
        literals: &["pass", "pwd", "secret", "key", "token"],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "netrc_password",
        severity: Severity::High,
        pattern: r"(?m)^[ \t]*machine[ \t]+\S{1,200}(?:[ \t]*\r?\n[ \t]*|[ \t]+)login[ \t]+\S{1,200}(?:[ \t]*\r?\n[ \t]*|[ \t]+)password[ \t]+(\S{4,200})",
        group: 1,
        check: Check::Password,
        bounded: false,
        literals: &["machine"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "pgpass_password",
        severity: Severity::High,
        // `host:port:database:user:password`, gated on PostgreSQL's port or the wildcard.
        pattern: r"(?m)^[A-Za-z0-9.*_-]{1,253}:(?:5432|\*):[^:\s]{1,63}:[^:\s]{1,63}:(\S{4,128})$",
        group: 1,
        check: Check::Password,
        bounded: false,
        literals: &[":5432:", ":*:"],
        case_insensitive: false,
    },
    // Structured tokens and credentials in context.
    RuleSpec {
        kind: "jwt",
        severity: Severity::Medium,
        pattern: r"eyJ[A-Za-z0-9_-]{10,600}\.eyJ[A-Za-z0-9_-]{2,1200}(?:\.[A-Za-z0-9_-]{0,600})?",
        group: 0,
        check: Check::Jwt,
        bounded: true,
        literals: &["eyJ"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "connection_string_password",
        severity: Severity::High,
        // The user part may be empty (`redis://:password@host`).
        pattern: r#"[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@"'<>;]{0,64}:([^\s:/@"'<>;]{3,128})@[A-Za-z0-9][A-Za-z0-9.-]{0,100}"#,
        group: 1,
        check: Check::Password,
        bounded: false,
        literals: &["://"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "authorization_header",
        severity: Severity::High,
        pattern: r"(?i)(?:proxy-)?authorization[\x22']?[ \t]*:[ \t]*(?:(?:bearer|basic|token|bot|api-token|apikey|digest)[ \t]+)?([A-Za-z0-9._~+/=:-]{8,1000})",
        group: 1,
        check: Check::Password,
        bounded: true,
        literals: &["authorization"],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "command_line_password",
        severity: Severity::High,
        pattern: r#"(?:^|[ \t])(?:-u|--user)[ \t]+["']?([^\s"':]{0,100})["']?:["']?([^\s"']{0,200})"#,
        // Groups: 1 the user, 2 the password (the secret is whichever is not a placeholder).
        group: 2,
        check: Check::UserPassword,
        bounded: false,
        literals: &[],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "generic_secret_assignment",
        severity: Severity::Medium,
        // Groups: 1 the keyword and its suffix (the rest of the name is found by walking back
        // from it, which keeps the pattern anchored on a literal), 2 the separator, 3 the value.
        pattern: r#"(?i)((?:passw(?:or)?d|passphrase|pass|pwd|[_.-]pw|secret|token|key|credentials?|creds|auth)[A-Za-z0-9_-]{0,4})["'\]]?([ \t]*(?::=|=>|=|:|\|\|)[ \t]*|[ \t]+)(?:["'`]|\{[ \t]*["'])?([A-Za-z0-9/+_.~!@#$%^&*=-]{8,200})"#,
        group: 3,
        check: Check::Assignment,
        bounded: false,
        literals: &[
            "pass", "pwd", "_pw", "-pw", ".pw", "secret", "token", "key", "cred", "auth",
        ],
        case_insensitive: true,
    },
];
