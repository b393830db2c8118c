// The page's two languages, Simplified Chinese and English. The API speaks stable machine codes
// (rule, severity, state, role, what happened); only the page turns them into words. Chosen from
// the browser's languages unless the user picked one (kept in localStorage: a preference, not a secret).
// Times are shown in the compound's local time (whoami's utc_offset_minutes), wherever the page is opened.

export const LANGUAGES = { en: "English", "zh-CN": "中文" };

const TEXT = {
  en: {
    "app.title": "Courtyard",
    "login.prompt": "Paste an API token (courtyard token add --role staff --community …).",
    "login.open": "Open",
    "link.connecting": "connecting",
    "link.live": "live",
    "link.down": "offline ({detail}), retrying",
    "card.people": "People inside",
    "card.vehicles": "Vehicles inside",
    "card.alerts": "Open alerts",
    "card.offline": "Devices offline",
    "card.today": "Today",
    "card.elders": "Elders",
    "card.response": "Response today",
    "response.summary": "ack p50 {ack} · arrive p50 {arrive} · {breached} late",
    "section.alerts": "Alerts",
    "section.map": "Site map",
    "section.gates": "Gates",
    "section.gates.note": "(latest passes first)",
    "section.elders": "Elders",
    "section.notices": "Notices",
    "section.notifications": "Who was told",
    "alerts.none": "No open alerts.",
    "col.severity": "Severity", "col.what": "What", "col.where": "Where", "col.detail": "Detail", "col.state": "State",
    "col.since": "Since", "col.assignee": "Responder",
    "col.gate": "Gate", "col.passes": "Passes", "col.granted": "Granted", "col.denied": "Denied", "col.fevers": "Fevers",
    "col.last_pass": "Last pass",
    "col.wearer": "Wearer", "col.home": "Home", "col.wellbeing": "Wellbeing", "col.heart_rate": "Heart rate", "col.spo2": "SpO2",
    "col.last_movement": "Last movement",
    "chart.entries": "People entering per hour", "chart.consumption": "Consumption per day", "chart.heart_rate": "Heart rate",
    "chart.empty": "no data yet",
    "notice.title": "Title", "notice.text": "Text", "notice.post": "Post", "notices.none": "No notices.",
    "notifications.none": "Nobody has been told anything yet.",
    "action.ack": "Acknowledge", "action.resolve": "Resolve", "action.on_my_way": "On my way", "action.arrived": "Arrived",
    "action.handed_over": "Handed over", "action.contacts": "Contacts", "action.snapshot": "Snapshot", "action.close": "Close",
    "action.sending": "sending…",
    "incident.where": "Where", "incident.building": "Building", "incident.floor": "Floor", "incident.unit": "Unit",
    "incident.grid": "Grid", "incident.state": "State", "incident.assignee": "Responder", "incident.response": "Response",
    "incident.opened": "Opened", "incident.detail": "Detail", "incident.chain": "So far", "incident.nobody": "nobody yet",
    "incident.gone": "This alert is no longer open.",
    "contacts.title": "Whom to call", "contacts.trail": "Showing these names and numbers is recorded in the log (the read trail).",
    "contacts.none": "No emergency contacts recorded for this household.", "contacts.wearer": "Wearer",
    "contacts.erased": "erased (forgotten at their request or by retention)", "contacts.withheld": "withheld from your role",
    "contacts.unavailable": "unavailable ({why})",
    "map.elsewhere": "Elsewhere", "map.empty": "No buildings recorded yet (POST /api/v1/site/{community}).",
    "map.floor": "floor {n}", "map.passes": "{n} passes",
    "error.action": "Could not {action}: {why}", "error.contacts": "No contacts: {why}", "error.snapshot": "No snapshot: {why}",
    "error.notice": "Could not post the notice: {why}",
    "language": "Language",
  },
  "zh-CN": {
    "app.title": "Courtyard 智慧社区",
    "login.prompt": "请粘贴 API 令牌（courtyard token add --role staff --community …）。",
    "login.open": "进入",
    "link.connecting": "连接中",
    "link.live": "实时",
    "link.down": "已断开（{detail}），正在重连",
    "card.people": "园内人数",
    "card.vehicles": "园内车辆",
    "card.alerts": "未处理告警",
    "card.offline": "离线设备",
    "card.today": "今日用量",
    "card.elders": "独居老人",
    "card.response": "今日响应",
    "response.summary": "确认中位 {ack} · 到场中位 {arrive} · 超时 {breached}",
    "section.alerts": "告警",
    "section.map": "园区地图",
    "section.gates": "门岗",
    "section.gates.note": "（最近通行在前）",
    "section.elders": "独居老人",
    "section.notices": "社区公告",
    "section.notifications": "通知记录",
    "alerts.none": "暂无未处理告警。",
    "col.severity": "级别", "col.what": "事件", "col.where": "位置", "col.detail": "详情", "col.state": "状态",
    "col.since": "时间", "col.assignee": "负责人",
    "col.gate": "门岗", "col.passes": "通行", "col.granted": "放行", "col.denied": "拒绝", "col.fevers": "发热",
    "col.last_pass": "最近通行",
    "col.wearer": "佩戴设备", "col.home": "住户", "col.wellbeing": "状况", "col.heart_rate": "心率", "col.spo2": "血氧",
    "col.last_movement": "最近活动",
    "chart.entries": "每小时入园人数", "chart.consumption": "每日用量", "chart.heart_rate": "心率",
    "chart.empty": "暂无数据",
    "notice.title": "标题", "notice.text": "内容", "notice.post": "发布", "notices.none": "暂无公告。",
    "notifications.none": "暂无通知。",
    "action.ack": "确认", "action.resolve": "解除", "action.on_my_way": "正在前往", "action.arrived": "已到达",
    "action.handed_over": "已移交", "action.contacts": "联系人", "action.snapshot": "抓拍", "action.close": "关闭",
    "action.sending": "发送中…",
    "incident.where": "位置", "incident.building": "楼栋", "incident.floor": "楼层", "incident.unit": "房号",
    "incident.grid": "网格", "incident.state": "状态", "incident.assignee": "负责人", "incident.response": "处置",
    "incident.opened": "发生时间", "incident.detail": "详情", "incident.chain": "处置经过", "incident.nobody": "尚未派单",
    "incident.gone": "该告警已不在处理中。",
    "contacts.title": "紧急联系人", "contacts.trail": "查看姓名和电话会记入日志（查阅记录）。",
    "contacts.none": "该住户未登记紧急联系人。", "contacts.wearer": "佩戴者",
    "contacts.erased": "已删除（应本人要求或保存期满）", "contacts.withheld": "您的角色无权查看",
    "contacts.unavailable": "无法获取（{why}）",
    "map.elsewhere": "其他位置", "map.empty": "尚未登记楼栋（POST /api/v1/site/{community}）。",
    "map.floor": "{n} 层", "map.passes": "通行 {n} 次",
    "error.action": "无法{action}：{why}", "error.contacts": "无法获取联系人：{why}", "error.snapshot": "无法获取抓拍：{why}",
    "error.notice": "无法发布公告：{why}",
    "language": "语言",
  },
};

// Machine codes the API sends, by kind. A code not listed is shown as it is (underscores as spaces).
const CODES = {
  en: {
    severity: { critical: "critical", major: "major", minor: "minor", warning: "warning" },
    state: { open: "open", acknowledged: "acknowledged", escalated: "escalated", resolved: "resolved" },
    role: { grid_worker: "grid worker", duty_manager: "duty manager", security: "security", maintenance: "maintenance",
            staff: "staff", admin: "admin", auditor: "auditor", resident: "resident" },
    wellbeing: { alert: "alert", attention: "attention", ok: "ok", unknown: "unknown" },
    webhook: { pending: "pending", delivered: "delivered", failed: "failed" },
    to: { staff: "staff", family: "family" },
  },
  "zh-CN": {
    rule: {
      fever: "体温异常", sos: "紧急呼叫", fall: "跌倒", spo2_low: "血氧过低", heart_rate_high: "心率过高",
      watch_removed: "手环摘下", smoke: "烟雾报警", gas: "燃气泄漏", water_leak: "漏水", door_open: "门未关",
      offline: "设备离线", inactivity: "长时间无活动", low_battery: "电量低", tamper: "设备被拆", continuous_flow: "持续用水",
      tailgating: "尾随进入", plate_mismatch: "车牌不符", consumption_spike: "用量突增", unknown_subject: "陌生人",
      repeated_denials: "多次拒绝通行", unknown_vehicle: "陌生车辆", vehicle_overstay: "车辆超时停留",
    },
    severity: { critical: "紧急", major: "重要", minor: "一般", warning: "提示" },
    state: { open: "待处理", acknowledged: "已确认", escalated: "已升级", resolved: "已解除" },
    role: { grid_worker: "网格员", duty_manager: "值班经理", security: "安保", maintenance: "维修",
            staff: "物业人员", admin: "管理员", auditor: "审计", resident: "住户" },
    response: { on_my_way: "正在前往", arrived: "已到达", handed_over: "已移交" },
    what: {
      opened: "发生", updated: "更新", escalated: "升级", acknowledged: "确认", resolved: "解除", reopened: "再次发生",
      hushed: "消音", hush_ended: "消音结束", assigned: "派单", unassigned: "无人值班", unanswered: "无人响应",
      reassigned: "改派", on_my_way: "正在前往", arrived: "已到达", handed_over: "已移交",
      alert: "告警", staff_assigned: "已派工作人员", staff_arrived: "工作人员已到达", relieved: "已转交他人",
    },
    wellbeing: { alert: "告警", attention: "关注", ok: "正常", unknown: "未知" },
    webhook: { pending: "待发送", delivered: "已送达", failed: "发送失败" },
    to: { staff: "工作人员", family: "家属" },
  },
};

// The language to show: the user's pick if it is one we speak, else the browser's first Chinese or
// English preference (any zh-* reads Simplified Chinese), else English.
export function chooseLanguage(picked, preferred = []) {
  if (picked && LANGUAGES[picked]) return picked;
  for (const tag of preferred) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

const fill = (text, vars) => text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));

export function makeTranslator(lang) {
  const text = TEXT[lang] || TEXT.en, codes = CODES[lang] || CODES.en;
  const t = (key, vars = {}) => fill(text[key] ?? TEXT.en[key] ?? key, vars);
  // A code of a kind (rule, severity, state, role, response, what, wellbeing, webhook, to) in words.
  t.code = (kind, code) => {
    if (code === undefined || code === null || code === "") return "";
    return codes[kind]?.[code] ?? CODES.en[kind]?.[code] ?? String(code).replaceAll("_", " ");
  };
  return t;
}

// A time on the compound's clock: `offsetMinutes` east of UTC, whatever the browser's own zone.
// Returns "HH:MM:SS", or "MM-DD HH:MM" when `withDate`.
export function compoundTime(ms, offsetMinutes, withDate = false) {
  if (!ms) return "–";
  const d = new Date(ms + offsetMinutes * 60000);
  const two = (n) => String(n).padStart(2, "0");
  const clock = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
  return withDate ? `${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${clock}` : `${clock}:${two(d.getUTCSeconds())}`;
}

// A duration in words short enough for a phone: "45 s", "3 min", "1 h 5 min".
export function duration(ms) {
  if (ms === undefined || ms === null) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
