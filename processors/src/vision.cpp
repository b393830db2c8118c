#include "processors/vision.h"

#include <algorithm>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>
#include <tesseract/baseapi.h>
#include <tesseract/resultiterator.h>

namespace courtyard::processors {

namespace {

std::expected<cv::Mat, std::string> decode_image(const VisionConfig& config, std::string_view image) {
  if (image.empty()) return std::unexpected(std::string("the image is empty"));
  if (image.size() > config.max_image_bytes) {
    return std::unexpected("the image is " + std::to_string(image.size()) + " bytes, more than " +
                           std::to_string(config.max_image_bytes));
  }
  const cv::Mat bytes(1, static_cast<int>(image.size()), CV_8UC1, const_cast<char*>(image.data()));
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(bytes, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return std::unexpected(std::string("not a decodable image: ") + e.what());
  }
  if (decoded.empty()) return std::unexpected(std::string("not a decodable image (JPEG or PNG expected)"));
  if (decoded.cols > config.max_side_px || decoded.rows > config.max_side_px) {
    return std::unexpected("the image is " + std::to_string(decoded.cols) + "x" + std::to_string(decoded.rows) +
                           ", larger than " + std::to_string(config.max_side_px) + " on a side");
  }
  return decoded;
}

}  // namespace

struct FaceDetector::Impl {
  VisionConfig config;
  mutable cv::CascadeClassifier faces;
  std::expected<cv::Mat, std::string> decode(std::string_view image) const { return decode_image(config, image); }
};

FaceDetector::FaceDetector() : impl_(std::make_unique<Impl>()) {}
FaceDetector::~FaceDetector() = default;

std::expected<std::unique_ptr<FaceDetector>, std::string> FaceDetector::open(const VisionConfig& config) {
  std::unique_ptr<FaceDetector> d(new FaceDetector());
  d->impl_->config = config;
  if (!d->impl_->faces.load(config.face_model)) return std::unexpected("cannot load the face model " + config.face_model);
  return d;
}

std::expected<ImageScan, std::string> FaceDetector::scan(std::string_view image) const {
  auto decoded = impl_->decode(image);
  if (!decoded) return std::unexpected(decoded.error());
  cv::Mat gray;
  cv::cvtColor(*decoded, gray, cv::COLOR_BGR2GRAY);
  cv::equalizeHist(gray, gray);
  std::vector<cv::Rect> found;
  const auto& c = impl_->config;
  impl_->faces.detectMultiScale(gray, found, c.scale_step, c.min_neighbors, 0, cv::Size(c.min_face_px, c.min_face_px));
  ImageScan out{decoded->cols, decoded->rows, {}};
  for (const auto& r : found) out.faces.push_back({r.x, r.y, r.width, r.height});
  std::sort(out.faces.begin(), out.faces.end(), [](const Box& a, const Box& b) { return a.x < b.x; });
  return out;
}

std::expected<std::string, std::string> FaceDetector::blur_faces(std::string_view image, const std::vector<Box>& faces) const {
  auto decoded = impl_->decode(image);
  if (!decoded) return std::unexpected(decoded.error());
  cv::Mat& img = *decoded;
  const cv::Rect whole(0, 0, img.cols, img.rows);
  for (const auto& f : faces) {
    // The whole head: half the face's size around it (hair line, chin and ears identify people too,
    // and a blurred face inside an intact head still reads as a face at a coarser scale).
    const int mx = f.width / 2, my = f.height / 2;
    const cv::Rect area = cv::Rect(f.x - mx, f.y - my, f.width + 2 * mx, f.height + 2 * my) & whole;
    if (area.empty()) continue;
    cv::Mat region = img(area);
    cv::Mat cells;
    const int n = std::max(1, impl_->config.blur_cells);
    cv::resize(region, cells, cv::Size(n, n), 0, 0, cv::INTER_AREA);
    cv::resize(cells, region, region.size(), 0, 0, cv::INTER_NEAREST);
    cv::GaussianBlur(region, region, cv::Size(0, 0), std::max(2.0, area.width / 12.0));
  }
  std::vector<unsigned char> jpeg;
  if (!cv::imencode(".jpg", img, jpeg, {cv::IMWRITE_JPEG_QUALITY, 85})) {
    return std::unexpected(std::string("cannot encode the blurred image"));
  }
  return std::string(jpeg.begin(), jpeg.end());
}

struct PlateReader::Impl {
  VisionConfig config;
  mutable cv::CascadeClassifier plates;
  mutable tesseract::TessBaseAPI ocr;
  bool ocr_ready = false;
  ~Impl() {
    if (ocr_ready) ocr.End();
  }

  // The white plate inside a detected region: the largest bright shape, less its border.
  static cv::Rect plate_within(const cv::Mat& gray) {
    cv::Mat bin;
    cv::threshold(gray, bin, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(bin, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::Rect best;
    for (const auto& c : contours) {
      auto b = cv::boundingRect(c);
      if (b.area() > best.area()) best = b;
    }
    const int border = std::max(2, best.height / 12);
    if (best.width <= 4 * border || best.height <= 4 * border) return {0, 0, gray.cols, gray.rows};
    return {best.x + border, best.y + border, best.width - 2 * border, best.height - 2 * border};
  }
};

PlateReader::PlateReader() : impl_(std::make_unique<Impl>()) {}
PlateReader::~PlateReader() = default;

std::expected<std::unique_ptr<PlateReader>, std::string> PlateReader::open(const VisionConfig& config) {
  std::unique_ptr<PlateReader> r(new PlateReader());
  r->impl_->config = config;
  if (!r->impl_->plates.load(config.plate_model)) return std::unexpected("cannot load the plate model " + config.plate_model);
  if (r->impl_->ocr.Init(nullptr, config.ocr_language.c_str()) != 0) {
    return std::unexpected("cannot start Tesseract with language " + config.ocr_language + " (tesseract-ocr-" +
                           config.ocr_language + " installed?)");
  }
  r->impl_->ocr_ready = true;
  r->impl_->ocr.SetPageSegMode(tesseract::PSM_SINGLE_LINE);
  r->impl_->ocr.SetVariable("tessedit_char_whitelist", "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789");
  r->impl_->ocr.SetVariable("user_defined_dpi", "300");  // a plate crop carries no resolution
  return r;
}

std::expected<std::vector<PlateReading>, std::string> PlateReader::read(std::string_view image) const {
  auto decoded = decode_image(impl_->config, image);
  if (!decoded) return std::unexpected(decoded.error());
  cv::Mat gray;
  cv::cvtColor(*decoded, gray, cv::COLOR_BGR2GRAY);
  std::vector<cv::Rect> found;
  impl_->plates.detectMultiScale(gray, found, 1.1, impl_->config.plate_min_neighbors, 0, cv::Size(40, 10));
  const cv::Rect whole(0, 0, gray.cols, gray.rows);
  std::vector<PlateReading> out;
  for (const auto& r : found) {
    // The cascade's box is rough: look a little around it for the plate itself.
    const cv::Rect wider = cv::Rect(r.x - r.width / 6, r.y - r.height / 3, r.width + r.width / 3, r.height + 2 * r.height / 3) & whole;
    cv::Mat roi = gray(wider);
    const cv::Rect inner = Impl::plate_within(roi);
    cv::Mat crop = roi(inner).clone();
    cv::resize(crop, crop, cv::Size(), 2, 2, cv::INTER_CUBIC);
    cv::threshold(crop, crop, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);
    // Tesseract reads a line best with a quiet margin around it.
    const int margin = crop.rows / 4;
    cv::copyMakeBorder(crop, crop, margin, margin, margin, margin, cv::BORDER_CONSTANT, cv::Scalar(255));
    impl_->ocr.SetImage(crop.data, crop.cols, crop.rows, 1, static_cast<int>(crop.step));
    PlateReading reading{{wider.x + inner.x, wider.y + inner.y, inner.width, inner.height}, {}, 0};
    // Character by character: the plate's confidence is its least certain character's (one wrong
    // character is another plate). (Tesseract's mean text confidence is sometimes 0 for a line it read well.)
    impl_->ocr.Recognize(nullptr);
    std::unique_ptr<tesseract::ResultIterator> it(impl_->ocr.GetIterator());
    double least = 100;
    if (it) {
      do {
        std::unique_ptr<char[]> symbol(it->GetUTF8Text(tesseract::RIL_SYMBOL));
        if (!symbol || !std::isalnum(static_cast<unsigned char>(symbol[0]))) continue;
        reading.text += symbol[0];
        least = std::min(least, static_cast<double>(it->Confidence(tesseract::RIL_SYMBOL)));
      } while (it->Next(tesseract::RIL_SYMBOL));
    }
    reading.confidence = reading.text.empty() ? 0 : least;
    out.push_back(std::move(reading));
  }
  return out;
}

std::expected<std::string, std::string> side_by_side_jpeg(const std::vector<std::string>& photos) {
  std::vector<cv::Mat> parts;
  int height = 0;
  for (const auto& photo : photos) {
    cv::Mat m = cv::imdecode(cv::Mat(1, static_cast<int>(photo.size()), CV_8U, const_cast<char*>(photo.data())), cv::IMREAD_COLOR);
    if (m.empty()) return std::unexpected(std::string("a photograph does not decode"));
    height = std::max(height, m.rows);
    parts.push_back(std::move(m));
  }
  if (parts.empty()) return std::unexpected(std::string("no photographs"));
  for (auto& m : parts) {  // upscaled, never down: nobody's face gets smaller
    if (m.rows != height) cv::resize(m, m, cv::Size(m.cols * height / m.rows, height), 0, 0, cv::INTER_CUBIC);
  }
  cv::Mat scene;
  cv::hconcat(parts, scene);
  std::vector<unsigned char> jpeg;
  cv::imencode(".jpg", scene, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(jpeg.begin(), jpeg.end());
}

const std::vector<std::string>& legible_plates() {
  static const std::vector<std::string> kPlates = {"AB123CD", "XY987ZK", "LU456MN", "HZ202PQ", "CN888EV",
                                                   "SK314JT", "CY101AK", "GZ246LM", "SH777WX", "TJ612HN",
                                                   "WH909KP", "NJ424YF", "CQ731MT", "HK268ZX"};
  return kPlates;
}

std::string render_plate_jpeg(std::string_view text) {
  cv::Mat img(480, 640, CV_8UC3, cv::Scalar(90, 95, 100));
  const std::string t(text);
  int baseline = 0;
  const auto size = cv::getTextSize(t, cv::FONT_HERSHEY_DUPLEX, 1.3, 3, &baseline);
  const cv::Rect plate(320 - size.width / 2 - 16, 330 - size.height - 14, size.width + 32, size.height + 28);
  cv::rectangle(img, plate, cv::Scalar(245, 245, 245), cv::FILLED);
  cv::rectangle(img, plate, cv::Scalar(20, 20, 20), 3);
  cv::putText(img, t, cv::Point(320 - size.width / 2, 330), cv::FONT_HERSHEY_DUPLEX, 1.3, cv::Scalar(10, 10, 10), 3, cv::LINE_AA);
  std::vector<unsigned char> jpeg;
  cv::imencode(".jpg", img, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(jpeg.begin(), jpeg.end());
}

}  // namespace courtyard::processors
